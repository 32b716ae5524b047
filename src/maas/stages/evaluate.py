"""evaluate: test-split accuracy, macro-F1 and confusion matrix, then the accuracy gate.

The reports are written before the gate is checked, so a failing model still
leaves its numbers to look at; the stage then fails and stops the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.config import number
from maas.errors import GateFailed
from maas.stages import Stage, stage_entry
from maas.stages.preprocess import PREPROCESSOR_FILE, load_split

METRICS_FILE = "metrics.json"
TABLE_FILE = "evaluation.json"
PLOT_FILE = "confusion_matrix.png"


@stage_entry("evaluate")
def run(cfg: DictConfig) -> dict:
    from maas import model_files
    from maas.data.preprocessor import Preprocessor
    from maas.evaluation import anomaly_auroc, classification_metrics, plot_confusion_matrix

    x, y = load_split(cfg, "test")
    loaded = model_files.load(cfg.paths.trained)
    spec = loaded.spec
    out = loaded.predictor.predict(x)
    m = classification_metrics(y, out.proba.argmax(1), cfg.data.num_classes)
    reports = Path(cfg.paths.reports)
    metrics = {"test": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "samples": int(len(y))},
               "val": {"accuracy": spec["training"]["best_val_accuracy"]}}
    if out.anomaly is not None:  # a model that reconstructs: does its score tell noisy images from clean?
        std = number(cfg, "evaluate.anomaly_noise_std", 0.0, 1e9)
        pre = Preprocessor.load(Path(cfg.paths.processed) / PREPROCESSOR_FILE)
        noisy = loaded.predictor.predict(pre.add_noise(x, std, cfg.seed)).anomaly
        metrics["test"]["anomaly_auroc"] = anomaly_auroc(out.anomaly, noisy)
        print(f"evaluate: anomaly score AUROC {metrics['test']['anomaly_auroc']:.4f}, clean test images vs the "
              f"same with raw-pixel noise of std {std:g}", flush=True)
    io.write_json(reports / METRICS_FILE, metrics)
    io.write_json(reports / TABLE_FILE, {"per_class": m["per_class"], "confusion_matrix": m["confusion_matrix"]})
    plot_confusion_matrix(m["confusion_matrix"], reports / PLOT_FILE,
                          f"test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
    print(f"evaluate: test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {len(y)} samples",
          flush=True)
    gate = number(cfg, "gates.min_test_accuracy", 0.0, 1.0)
    if m["accuracy"] < gate:
        raise GateFailed(f"test accuracy {m['accuracy']:.4f} is below gates.min_test_accuracy={gate}")
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


STAGE = Stage(
    name="evaluate",
    run=run,
    deps=("{paths.processed}", "{paths.trained}"),
    outs=("{paths.reports}/" + METRICS_FILE, "{paths.reports}/" + TABLE_FILE, "{paths.reports}/" + PLOT_FILE),
    params=("gates.min_test_accuracy", "data.num_classes", "evaluate", "seed"),
    code=("src/maas/stages/evaluate.py", "src/maas/evaluation.py", "src/maas/model_files.py", "src/maas/backends",
          "src/maas/data/preprocessor.py",
          "src/maas/models", "src/maas/compression"),
    metrics=("{paths.reports}/" + METRICS_FILE,),
    plots=("{paths.reports}/" + PLOT_FILE,),
)
