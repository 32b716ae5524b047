"""Classification metrics and the confusion-matrix plot, shared by evaluate and compress."""

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


def plot_confusion_matrix(matrix: list[list[int]], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    im = ax.imshow(m, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(len(m)), yticks=range(len(m)))
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                color="white" if v > m.max() / 2 else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def anomaly_auroc(clean_scores: np.ndarray, noisy_scores: np.ndarray) -> float:
    """How well anomaly scores rank noisy images above clean ones: 1.0 perfectly, 0.5 by chance."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(noisy_scores))]
    return float(roc_auc_score(labels, np.r_[clean_scores, noisy_scores]))
