"""validate: run the Great Expectations suite on the raw data, and compare it with the training data.

Writes `result.json` (what later stages check) and, when Great Expectations
validated the table whole (up to `data.in_memory_rows` rows), its Data Docs
(HTML, under `data_docs/`); a larger table is validated chunk by chunk with the
same expectations (maas.validation.engine). With `data.on_bad_rows=quarantine`,
rows failing a row-level expectation go to `quarantine.csv` (`.parquet` for a
Parquet source) with their reasons, and the rest is judged and passed on.
On failure the last good `data/validated/` stays: the error names each failed
expectation, and the failed run's Data Docs go to a temp folder the error
points to.

Drift (`maas.validation.drift`): each feature column of the rows that passed,
against the training profile of the packaged model, read from `{paths.bento}/`
(not a DVC dependency: package's output, DVC would see a cycle). A column at or
above `drift.fail` fails the stage like a failed expectation; warnings are
printed. The drift goes to its own file, drift.json, not into result.json:
re-validating the same data once a model trained on it is packaged changes the
drift (now measured, about 0) but must not re-run preprocess or package, which
depend on result.json.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from maas import io
from maas.data.sources import raw_file, raw_md5
from maas.errors import DataValidationError
from maas.stages import Stage, stage_entry
from maas.validation.quarantine import bad_rows_policy

if TYPE_CHECKING:
    import pandas as pd

RESULT_FILE = "result.json"
DOCS_DIR = "data_docs"


@stage_entry("validate")
def run(cfg: DictConfig) -> dict:
    from maas.validation import drift
    from maas.validation.engine import start_importing_gx, validate_table
    from maas.validation.suite import describe_failures

    quarantine = bad_rows_policy(cfg) == "quarantine"
    start_importing_gx()
    path = raw_file(cfg)
    md5 = raw_md5(cfg)
    # Each is handed every chunk of the rows that passed, as they are read: the place for anything
    # else that looks at the incoming data (a profile to compare with the training data's).
    on_rows: list[Callable[[pd.DataFrame], None]] = []
    with io.atomic_dir(cfg.paths.validated) as out:
        drifting = drift.DriftCheck.start(cfg)  # vs the packaged model's training data, when there is one
        on_rows.append(drifting.update)
        outcome = validate_table(cfg, out, out / DOCS_DIR, quarantine, on_rows)
        report = outcome.report
        report.update({"data_file": str(path), "data_md5": md5, "rows": outcome.rows, "engine": outcome.engine,
                       "passed_rows": outcome.passed_rows, "quarantine": outcome.quarantine})
        drifted = drifting.finish()
        print(f"validate: {drift.summary(drifted)}", flush=True)
        if not report["success"] or drifted["status"] == "fail":
            # Leaving the block by raising discards `out`; keep this run's Data Docs apart.
            message = "\n".join(
                ([f"{path} failed {len(report['failed'])} expectation(s) of suite {report['suite']!r}"
                  f"{' on the rows not quarantined' if quarantine else ''}:\n"
                  + describe_failures(report["failed"])] if not report["success"] else [])
                + ([f"{path}: {drift.failure_message(drifted)}"] if drifted["status"] == "fail" else []))
            if (out / DOCS_DIR).exists():
                kept = Path(tempfile.mkdtemp(prefix="maas-validate-")) / DOCS_DIR
                shutil.move(out / DOCS_DIR, kept)
                message += f"\n  Data Docs of this run: {kept / 'index.html'}"
            raise DataValidationError(message)
        io.write_json(out / RESULT_FILE, report)
        io.write_json(out / drift.DRIFT_FILE, drifted)
    stats = report["statistics"]
    print(f"validate: {_rows_line(outcome, Path(cfg.paths.validated))} "
          f"{stats['successful_expectations']} expectations ({outcome.engine})", flush=True)
    if drifted["status"] == "warn":
        print(f"validate: drift warnings (at or above drift.warn={drifted['warn']:g}):\n" + drift.table(drifted),
              flush=True)
    return {"rows": outcome.rows, "passed_rows": outcome.passed_rows, "engine": outcome.engine,
            "quarantined": outcome.quarantine["rows"] if outcome.quarantine else 0,
            "expectations": stats["evaluated_expectations"],
            "result": str(Path(cfg.paths.validated) / RESULT_FILE), "drift": drifted["status"]}


def _rows_line(outcome, validated: Path) -> str:
    """'1797 rows passed', or '1797 rows, 12 quarantined (...) to <file>, 1785 passed'."""
    q = outcome.quarantine
    if q is None:
        return f"{outcome.rows} rows passed"
    why = ", ".join(f"{b['rows']} {b['expectation']} on {b['column']}" for b in q["by_expectation"][:5])
    more = f", ... {len(q['by_expectation']) - 5} more" if len(q["by_expectation"]) > 5 else ""
    held = f" ({why}{more}) to {validated / q['file']}" if q["rows"] else ""
    return f"{outcome.rows} rows, {q['rows']} quarantined{held}, {outcome.passed_rows} passed"


STAGE = Stage(
    name="validate",
    run=run,
    deps=("{data.path}",),
    outs=("{paths.validated}",),
    params=("data", "expectations", "drift.method", "drift.warn", "drift.fail", "drift.min_rows"),
)
