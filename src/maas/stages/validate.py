"""validate: run the Great Expectations suite on the raw data, and compare it with the training data.

Writes `result.json` (what later stages check) and GX's Data Docs (HTML, under
`data_docs/`). On failure the last good `data/validated/` stays: the error names
each failed expectation, and the failed run's Data Docs go to a temp folder
the error points to.

Drift (`maas.validation.drift`): each feature column against the training
profile of the packaged model, read from `{paths.bento}/` (not a DVC
dependency: package's output, DVC would see a cycle). A column at or above
`drift.fail` fails the stage like a failed expectation; warnings are printed;
both go into result.json under `drift`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.data.sources import raw_file, raw_md5, read_raw
from maas.errors import DataValidationError
from maas.stages import Stage, stage_entry

RESULT_FILE = "result.json"
DOCS_DIR = "data_docs"


@stage_entry("validate")
def run(cfg: DictConfig) -> dict:
    from maas.validation import drift
    from maas.validation.suite import describe_failures, validate_frame

    path = raw_file(cfg)
    frame = read_raw(cfg)
    with io.atomic_dir(cfg.paths.validated) as out:
        report = validate_frame(frame, cfg.data, cfg.expectations, docs_dir=out / DOCS_DIR)
        report.update({"data_file": str(path), "data_md5": raw_md5(cfg), "rows": len(frame)})
        report["drift"] = drift.check(cfg, frame)  # vs the packaged model's training data, when there is one
        print(f"validate: {drift.summary(report['drift'])}", flush=True)
        if not report["success"] or report["drift"]["status"] == "fail":
            # Leaving the block by raising discards `out`; keep this run's Data Docs apart.
            message = "\n".join(
                ([f"{path} failed {len(report['failed'])} expectation(s) of suite {report['suite']!r}:\n"
                  + describe_failures(report["failed"])] if not report["success"] else [])
                + ([f"{path}: {drift.failure_message(report['drift'])}"] if report["drift"]["status"] == "fail"
                   else []))
            if (out / DOCS_DIR).exists():
                kept = Path(tempfile.mkdtemp(prefix="maas-validate-")) / DOCS_DIR
                shutil.move(out / DOCS_DIR, kept)
                message += f"\n  Data Docs of this run: {kept / 'index.html'}"
            raise DataValidationError(message)
        io.write_json(out / RESULT_FILE, report)
    stats = report["statistics"]
    print(f"validate: {len(frame)} rows passed {stats['successful_expectations']} expectations", flush=True)
    if report["drift"]["status"] == "warn":
        print(f"validate: drift warnings (at or above drift.warn={report['drift']['warn']:g}):\n"
              + drift.table(report["drift"]), flush=True)
    return {"rows": len(frame), "expectations": stats["evaluated_expectations"],
            "result": str(Path(cfg.paths.validated) / RESULT_FILE)}


STAGE = Stage(
    name="validate",
    run=run,
    deps=("{paths.raw}",),
    outs=("{paths.validated}",),
    params=("data", "expectations", "drift.method", "drift.warn", "drift.fail", "drift.min_rows"),
    code=("src/maas/stages/validate.py", "src/maas/validation", "src/maas/data/sources.py"),
)
