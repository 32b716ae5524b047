"""compress: store the trained model compressed, and keep it only if it holds its accuracy.

The compressed variant is reloaded from disk exactly as the Bento will load it
and scored on the validation split (choosing a variant is model selection, so
not on test), so the recorded accuracy is the served one's. If
it loses more than `gates.max_compression_accuracy_drop`, the fp32 model is
kept instead and the report says why.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.config import choice, number
from maas.stages import Stage, stage_entry
from maas.stages.preprocess import load_split

REPORT_FILE = "compression.json"


def _score(model_dir: Path, x, y) -> float:
    from maas import model_files

    return float((model_files.load(model_dir).predictor.predict(x).proba.argmax(1) == y).mean())


@stage_entry("compress")
def run(cfg: DictConfig) -> dict:
    from maas import backends, model_files
    from maas.compression import METHODS, compress

    method = choice(cfg, "compress.method", METHODS)
    trained = Path(cfg.paths.trained)
    spec = model_files.read_spec(trained)
    weights = model_files.read_weights(trained, spec)
    axis = backends.get(spec["backend"]).OUTPUT_CHANNEL_AXIS
    # Choosing between variants is model selection, so it uses val, never test.
    x, y = load_split(cfg, "val")
    baseline = {"method": "none", "bytes": (trained / spec["weights"]).stat().st_size,
                "accuracy": _score(trained, x, y)}

    with io.atomic_dir(cfg.paths.compressed) as out:
        name = model_files.WEIGHTS_FILE if method == "none" else f"weights.{method}.safetensors"
        model_files.write_model_dir(out, weights=compress(weights, method, axis), weights_file=name,
                                    spec={**spec, "compression": {"method": method}})
        candidate = {"method": method, "bytes": (out / name).stat().st_size, "accuracy": _score(out, x, y)}
        drop = baseline["accuracy"] - candidate["accuracy"]
        # Below zero demands a gain, which forces the fp32 fallback (tests use it).
        max_drop = number(cfg, "gates.max_compression_accuracy_drop", -1.0, 1.0)
        kept = candidate if drop <= max_drop else baseline
        if kept is baseline:
            print(f"compress: {method} lost {drop:.4f} accuracy (> {max_drop}); keeping fp32", flush=True)
            model_files.write_model_dir(out, weights=weights, spec={**spec, "compression": {"method": "none"}})
            if name != model_files.WEIGHTS_FILE:  # method none already wrote the fp32 file
                (out / name).unlink(missing_ok=True)
    # Reported, not used to choose: the test accuracy of exactly what will be served.
    served_test_accuracy = _score(Path(cfg.paths.compressed), *load_split(cfg, "test"))
    report = {"variants": [baseline, candidate], "chosen": kept["method"], "accuracy_drop": drop,
              "served_test_accuracy": served_test_accuracy,
              "max_accuracy_drop": max_drop, "split": "val", "size_ratio": candidate["bytes"] / baseline["bytes"]}
    io.write_json(Path(cfg.paths.reports) / REPORT_FILE, report)
    print(f"compress: {method} {candidate['bytes']:,} bytes vs fp32 {baseline['bytes']:,} "
          f"({report['size_ratio']:.2f}x), val accuracy {candidate['accuracy']:.4f} vs {baseline['accuracy']:.4f}; "
          f"chosen: {kept['method']}", flush=True)
    return {"chosen": kept["method"], "size_ratio": report["size_ratio"], "accuracy_drop": drop}


STAGE = Stage(
    name="compress",
    run=run,
    deps=("{paths.trained}", "{paths.processed}"),
    outs=("{paths.compressed}", "{paths.reports}/" + REPORT_FILE),
    params=("compress", "gates.max_compression_accuracy_drop"),
    code=("src/maas/stages/compress.py", "src/maas/compression", "src/maas/model_files.py", "src/maas/backends",
          "src/maas/models"),
    metrics=("{paths.reports}/" + REPORT_FILE,),
)
