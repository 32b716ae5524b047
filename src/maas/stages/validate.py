"""validate: run the Great Expectations suite on the raw data, and compare it with the training data.

Writes `result.json` (what later stages check) and GX's Data Docs (HTML, under
`data_docs/`). On failure the last good `data/validated/` stays: the error names
each failed expectation, and the failed run's Data Docs go to a temp folder
the error points to.

Drift (`maas.validation.drift`): each feature column against the training
profile of the packaged model, read from `{paths.bento}/` (not a DVC
dependency: package's output, DVC would see a cycle). A column at or above
`drift.fail` fails the stage like a failed expectation; warnings are printed.
The drift goes to its own file, drift.json, not into result.json: re-validating
the same data once a model trained on it is packaged changes the drift (now
measured, about 0) but must not re-run preprocess or package, which depend on
result.json.
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
        drifted = drift.check(cfg, frame)  # vs the packaged model's training data, when there is one
        print(f"validate: {drift.summary(drifted)}", flush=True)
        if not report["success"] or drifted["status"] == "fail":
            # Leaving the block by raising discards `out`; keep this run's Data Docs apart.
            message = "\n".join(
                ([f"{path} failed {len(report['failed'])} expectation(s) of suite {report['suite']!r}:\n"
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
    print(f"validate: {len(frame)} rows passed {stats['successful_expectations']} expectations", flush=True)
    if drifted["status"] == "warn":
        print(f"validate: drift warnings (at or above drift.warn={drifted['warn']:g}):\n" + drift.table(drifted),
              flush=True)
    return {"rows": len(frame), "expectations": stats["evaluated_expectations"],
            "result": str(Path(cfg.paths.validated) / RESULT_FILE), "drift": drifted["status"]}


STAGE = Stage(
    name="validate",
    run=run,
    deps=("{data.path}",),
    outs=("{paths.validated}",),
    params=("data", "expectations", "drift.method", "drift.warn", "drift.fail", "drift.min_rows"),
    code=("src/maas/stages/validate.py", "src/maas/validation", "src/maas/data"),
)
