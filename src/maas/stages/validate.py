"""validate: run the Great Expectations suite on the raw data.

On failure nothing is written: the last good `data/validated/` stays, and the
error names each failed expectation.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.data.sources import raw_file, read_raw
from maas.errors import DataValidationError
from maas.stages import Stage, stage_entry

RESULT_FILE = "result.json"


@stage_entry("validate")
def run(cfg: DictConfig) -> dict:
    from maas.validation.suite import describe_failures, validate_frame

    path = raw_file(cfg)
    frame = read_raw(cfg)
    report = validate_frame(frame, cfg.data, cfg.expectations)
    report.update({"data_file": str(path), "data_md5": io.file_md5(path), "rows": len(frame)})
    if not report["success"]:
        raise DataValidationError(
            f"{path} failed {len(report['failed'])} expectation(s) of suite {report['suite']!r}:\n"
            + describe_failures(report["failed"])
        )
    with io.atomic_dir(cfg.paths.validated) as out:
        io.write_json(out / RESULT_FILE, report)
    stats = report["statistics"]
    print(f"validate: {len(frame)} rows passed {stats['successful_expectations']} expectations", flush=True)
    return {"rows": len(frame), "expectations": stats["evaluated_expectations"],
            "result": str(Path(cfg.paths.validated) / RESULT_FILE)}


STAGE = Stage(
    name="validate",
    run=run,
    deps=("{paths.raw}",),
    outs=("{paths.validated}",),
    params=("data", "expectations"),
    code=("src/maas/stages/validate.py", "src/maas/validation", "src/maas/data/sources.py"),
)
