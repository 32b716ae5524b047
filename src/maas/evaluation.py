"""Classification metrics, calibration, and their plots (confusion matrix, reliability diagram)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maas import io


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": [
            {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(labels, precision, recall, f1, support)
        ],
    }


def calibration(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error over `bins` equal-width confidence bins, and the bins themselves.

    ECE = sum over bins of (rows in bin / rows) * |accuracy in bin - mean confidence in bin|:
    0 when "90% sure" is right 90% of the time. Confidence is the top class's probability."""
    confidence = proba.max(1)
    correct = proba.argmax(1) == y_true
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for i in range(bins):
        rows = index == i
        n = int(rows.sum())
        if n == 0:
            continue
        acc, conf = float(correct[rows].mean()), float(confidence[rows].mean())
        ece += n / len(y_true) * abs(acc - conf)
        table.append({"bin": i, "low": i / bins, "high": (i + 1) / bins, "count": n,
                      "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": bins, "table": table}


def plot_reliability(cal: dict, path: str | Path, title: str) -> Path:
    """Accuracy against confidence per bin, with the diagonal a perfectly calibrated model follows."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    width = 1 / cal["bins"]
    lows = [b["low"] for b in cal["table"]]
    ax.bar(lows, [b["accuracy"] for b in cal["table"]], width=width, align="edge", edgecolor="black",
           color="tab:blue", label="accuracy")
    ax.bar(lows, [b["confidence"] - b["accuracy"] for b in cal["table"]], bottom=[b["accuracy"] for b in cal["table"]],
           width=width, align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    ax.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(lows, [b["count"] for b in cal["table"]], width=width, align="edge", edgecolor="black", color="grey")
    hist.set(xlabel="confidence (top-class probability)", ylabel="rows")
    hist.set_yscale("log")
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version stamp: same figure, same bytes
    _pyplot().close(fig)
    return Path(path)


def plot_confusion_matrix(matrix: list[list[int]], path: str | Path, title: str) -> Path:
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    im = ax.imshow(m, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(len(m)), yticks=range(len(m)))
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                color="white" if v > m.max() / 2 else "black")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def anomaly_auroc(clean_scores: np.ndarray, noisy_scores: np.ndarray) -> float:
    """How well anomaly scores rank noisy images above clean ones: 1.0 perfectly, 0.5 by chance."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(noisy_scores))]
    return float(roc_auc_score(labels, np.r_[clean_scores, noisy_scores]))
