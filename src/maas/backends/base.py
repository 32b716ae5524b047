"""What every backend returns, so the stages and the Bento stay framework-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class TrainResult:
    model: Any                  # the backend's model, holding the best epoch's weights
    best_epoch: int             # 1-based; -1 if no epoch had a finite validation loss
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    record: dict = field(default_factory=dict)         # device, precision, resumed_from...: into model.yaml


@dataclass
class Prediction:
    proba: np.ndarray                    # (N, classes) float32, rows sum to 1
    anomaly: np.ndarray | None = None    # (N,) reconstruction error, for models that reconstruct


class Predictor(Protocol):
    def predict(self, x: np.ndarray) -> Prediction:
        """x: (N, C, H, W) float32, already preprocessed."""
