"""evaluate: the model on the held-out test split, its report, then the gates.

Writes reports/metrics.json (accuracy, macro-F1, expected calibration error:
DVC metrics) and reports/evaluation/: per-class precision and recall, the
confusion matrix and reliability diagram (PNG, and as CSV data DVC plots), the
gates' results, and report.md / report.html. The reports are written before
the gates are enforced, so a model that fails still leaves its numbers to look
at; the stage then fails and stops the pipeline before compress and package.
"""

from __future__ import annotations

import csv
import io as text_io
from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.checks import number
from maas.stages import Stage, stage_entry
from maas.stages.preprocess import PREPROCESSOR_FILE, load_split

METRICS_FILE = "metrics.json"
REPORT_DIR = "evaluation"      # under paths.reports
GATES_FILE = "gates.json"      # in REPORT_DIR: what package puts into the model card
CHAMPION_FILE = "champion.json"  # in REPORT_DIR: gates.champion's comparison with the packaged model (not hashed)
CALIBRATION_BINS = 15


def _csv(header: list[str], rows) -> str:
    buf = text_io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@stage_entry("evaluate")
def run(cfg: DictConfig) -> dict:
    from maas import eval_report, gates, model_files
    from maas.data.preprocessor import Preprocessor
    from maas.evaluation import (anomaly_auroc, calibration, classification_metrics, plot_confusion_matrix,
                                 plot_reliability)

    # Settings first: a typo fails before anything is computed or written.
    number(cfg, "gates.min_test_accuracy", 0.0, 1.0)
    x, y = load_split(cfg, "test")
    loaded = model_files.load(cfg.paths.trained)
    spec = loaded.spec
    out = loaded.predictor.predict(x)
    predicted = out.proba.argmax(1)
    m = classification_metrics(y, predicted, cfg.data.num_classes)
    cal = calibration(y, out.proba, CALIBRATION_BINS)
    test = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "ece": cal["ece"], "samples": int(len(y))}
    if out.anomaly is not None:  # a model that reconstructs: does its score tell noisy images from clean?
        std = number(cfg, "evaluate.anomaly_noise_std", 0.0, 1e9)
        pre = Preprocessor.load(Path(cfg.paths.processed) / PREPROCESSOR_FILE)
        noisy = loaded.predictor.predict(pre.add_noise(x, std, cfg.seed)).anomaly
        test["anomaly_auroc"] = anomaly_auroc(out.anomaly, noisy)
        print(f"evaluate: anomaly score AUROC {test['anomaly_auroc']:.4f}, clean test images vs the "
              f"same with raw-pixel noise of std {std:g}", flush=True)
    metrics = {"test": test, "val": {"accuracy": spec["training"]["best_val_accuracy"]}}
    print(f"evaluate: test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, expected calibration "
          f"error {cal['ece']:.4f} on {len(y)} samples", flush=True)

    reports = Path(cfg.paths.reports)
    results = gates.absolute(cfg, test)
    # The champion gate compares with whatever model is packaged now: history, not a function of this stage's
    # inputs. Its record goes to CHAMPION_FILE, which DVC doesn't hash (.dvcignore), so the same model gives
    # the same tracked outputs whatever was packaged before.
    challenge = gates.champion(cfg, test, Path(cfg.paths.bento), spec["weights_sha256"])
    with io.atomic_dir(reports / REPORT_DIR) as d:
        io.write_json(d / "evaluation.json", {"per_class": m["per_class"], "confusion_matrix": m["confusion_matrix"],
                                              "calibration": cal})
        io.write_json(d / GATES_FILE, results)
        io.write_json(d / CHAMPION_FILE, challenge)
        # Data for DVC's own plots (`dvc plots show/diff`): one row per test row, one per confidence bin.
        io.write_text(d / "predictions.csv", _csv(["actual", "predicted"], zip(y.tolist(), predicted.tolist())))
        io.write_text(d / "calibration.csv", _csv(["confidence", "accuracy", "count"],
                                                  [[round(b["confidence"], 6), round(b["accuracy"], 6), b["count"]]
                                                   for b in cal["table"]]))
        plot_confusion_matrix(m["confusion_matrix"], d / "confusion_matrix.png",
                              f"test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
        plot_reliability(cal, d / "reliability.png", f"reliability: ECE {cal['ece']:.4f} over {len(y)} test rows")
        parts = eval_report.sections(metrics, m["per_class"], cal, results, spec["model"]["arch"])
        io.write_text(d / "report.md", eval_report.render_markdown(parts))
        io.write_text(d / "report.html", eval_report.render_html(parts, d))
    io.write_json(reports / METRICS_FILE, metrics)
    for r in [*results, challenge]:
        print(f"evaluate: gate {r['gate']}: {'pass' if r['passed'] else 'FAIL'} ({r['compares']}: {r['value']}; "
              f"{r['threshold']})", flush=True)
    gates.enforce([*results, challenge])
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "ece": cal["ece"]}


_EVAL = "{paths.reports}/" + REPORT_DIR
STAGE = Stage(
    name="evaluate",
    run=run,
    deps=("{paths.processed}", "{paths.trained}"),
    outs=("{paths.reports}/" + METRICS_FILE, _EVAL),
    params=("gates", "data.num_classes", "evaluate", "seed"),
    metrics=("{paths.reports}/" + METRICS_FILE,),
    plots=(_EVAL + "/confusion_matrix.png", _EVAL + "/reliability.png",
           {"confusion": {"template": "confusion", "x": "actual", "y": {_EVAL + "/predictions.csv": "predicted"},
                          "title": "test split: actual vs predicted"}},
           {"calibration": {"template": "simple", "x": "confidence", "y": {_EVAL + "/calibration.csv": "accuracy"},
                            "title": "reliability: accuracy per confidence bin"}}),
)
