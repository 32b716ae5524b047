"""Drift on shifted wine: what validate says when new data moves away from the training data.

    .venv/bin/python bench/drift_shift.py [--alcohol-std 2] [--color-factor 1.5]

In a temp folder: exports scikit-learn's wine table, runs the validate and
preprocess stages on it (preprocess writes the training split's profile), and
puts that profile where the package stage leaves it beside a packaged model
({paths.bento}/profile.json, named in bento.json). Then validates, against it,
the same table (no drift: passes) and a copy with alcohol moved up by
`--alcohol-std` training standard deviations and color_intensity multiplied by
`--color-factor` (fails, naming both). Prints validate's own output for each;
the last line is a JSON object with the shifted table's per-column PSI and KS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alcohol-std", type=float, default=2.0, help="alcohol + this many training stds")
    ap.add_argument("--color-factor", type=float, default=1.5, help="color_intensity x this")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="maas-drift-") as tmp:
        run(Path(tmp), args)


def run(work: Path, args: argparse.Namespace) -> None:
    from maas import io
    from maas.config import compose
    from maas.data.profile import PROFILE_FILE
    from maas.data.sources import export, read_raw, write_table
    from maas.errors import DataValidationError
    from maas.gates import BENTO_FILE
    from maas.registry import get
    from maas.validation import drift

    overrides = ["data=wine", f"paths.raw={work / 'raw'}",
                 *(f"paths.{k}={work / k}" for k in ("validated", "processed", "bento"))]
    cfg = compose(overrides)
    export(cfg)
    get("validate").run(cfg)  # nothing packaged yet: no reference
    get("preprocess").run(cfg)
    # What package leaves in paths.bento for the next validate (the Bento archive itself aside).
    (work / "bento").mkdir()
    io.write_bytes(work / "bento" / PROFILE_FILE, (work / "processed" / PROFILE_FILE).read_bytes())
    io.write_json(work / "bento" / BENTO_FILE, {"bento_tag": "maas-wine:trained-on-raw", "model_tag": "maas-wine:m",
                                                "profile": PROFILE_FILE})

    print("\n=== the same table again", flush=True)
    get("validate").run(cfg)

    frame = read_raw(cfg)
    profile = io.read_json(work / "processed" / PROFILE_FILE)["columns"]
    frame["alcohol"] += args.alcohol_std * profile["alcohol"]["std"]
    frame["color_intensity"] *= args.color_factor
    shifted = compose(overrides[:1] + [f"paths.raw={work / 'shifted'}"] + overrides[2:])
    write_table(frame, shifted.data.path, "csv")
    print(f"\n=== alcohol +{args.alcohol_std:g} std, color_intensity x{args.color_factor:g}", flush=True)
    try:
        get("validate").run(shifted)
    except DataValidationError as e:  # the stage printed why; drop the Data Docs it kept for this demo
        shutil.rmtree(Path(str(e).rsplit("Data Docs of this run: ", 1)[1]).parents[1], ignore_errors=True)
    record = drift.check(shifted, frame)
    print(json.dumps({"status": record["status"], "failed": record["failed"], "warned": record["warned"],
                      "columns": {n: {k: c[k] for k in ("psi", "ks", "status")}
                                  for n, c in drift.most_drifted(record)}}))


if __name__ == "__main__":
    main()
