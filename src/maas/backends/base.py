"""What every backend returns, so the stages and the Bento stay framework-neutral."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from maas.backends.privacy import Privacy
from maas.backends.privacy import from_trainer as privacy_from_trainer
from maas.errors import ConfigError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")  # trainer.precision, for every backend


@dataclass
class TrainResult:
    model: Any                  # the backend's model, holding the best epoch's weights
    best_epoch: int             # 1-based; -1 if no epoch had a finite validation loss
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    # device, precision, processes: into model.yaml. Not whether it resumed: a resumed run's model
    # directory is byte-identical to an uninterrupted one's, so DVC sees the same output.
    record: dict = field(default_factory=dict)


@dataclass
class Prediction:
    proba: np.ndarray                    # (N, classes) float32, rows sum to 1
    anomaly: np.ndarray | None = None    # (N,) reconstruction error, for models that reconstruct


class Predictor(Protocol):
    def predict(self, x: np.ndarray) -> Prediction:
        """x: (N, C, H, W) float32, already preprocessed."""


# Every forward pass runs at this one batch shape. CPU kernels pick their blocking (and so the
# order they sum in) by batch size, so a row's probabilities would otherwise change in the 7th
# digit with the rows it is batched with; at one shape a row's answer is bit-for-bit the same
# whatever its batch-mates and position, in the pipeline's measurements and in the Bento alike.
# 16 rows: a single image costs ~1.7 ms instead of ~0.4 ms on CPU, while 64 images run within
# ~1.3x of the best batch size (measured on the digits CNN).
BLOCK_ROWS = 16


def predict_in_blocks(x: np.ndarray, forward, scores_anomalies: bool, rows: int = BLOCK_ROWS) -> Prediction:
    """A Prediction from forward(block) -> (proba, anomaly) run on consecutive blocks of `rows` rows
    of x, the last block zero-padded and every result cut back to the real rows."""
    if len(x) == 0:
        raise ValueError("predict needs at least one input")
    x = np.ascontiguousarray(x, dtype=np.float32)
    proba, anomaly = [], []
    for i in range(0, len(x), rows):
        block = x[i:i + rows]
        real = len(block)
        if real < rows:
            block = np.concatenate([block, np.zeros((rows - real, *block.shape[1:]), np.float32)])
        p, a = forward(block)
        proba.append(p[:real])
        anomaly.append(a[:real] if scores_anomalies else None)
    return Prediction(np.concatenate(proba).astype(np.float32),
                      np.concatenate(anomaly).astype(np.float32) if scores_anomalies else None)


@dataclass(frozen=True)
class Settings:
    """What a backend's training loop reads from `trainer`, checked once for every backend."""

    epochs: int
    batch_size: int
    optimizer: dict                    # trainer.optimizer: name + arguments
    scheduler: dict                    # trainer.scheduler: name + arguments
    seed: int
    precision: str = "32"
    augment_shift: int = 0             # pixels of random translation (0: off)
    label_smoothing: float = 0.0
    grad_clip_norm: float = 0.0        # 0: off
    early_stopping_patience: int = 0   # 0: off
    channels_last: bool = False        # torch only: NHWC activations, faster convs on CUDA tensor cores
    compile: bool = False              # torch only: torch.compile the step (the first epoch pays for it)
    nproc: int = 1                     # torch only: processes on this machine (DDP under torchrun)
    privacy: Privacy | None = None     # torch only: DP-SGD through Opacus (None: off)

    @classmethod
    def from_trainer(cls, t: dict[str, Any], *, seed: int) -> "Settings":
        """From the composed `trainer` mapping, every value checked (a bad one names its key)."""
        def number(key: str, low: float, high: float = math.inf, *, integer: bool = False, open_high=False,
                   default=0):
            value = t.get(key, default)
            ok = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or not (low <= value and (value < high if open_high else value <= high)):
                kind = "an integer" if integer else "a number"
                bound = f">= {low}" + (f" and {'<' if open_high else '<='} {high}" if high != math.inf else "")
                raise ConfigError(f"trainer.{key}={value!r} must be {kind} {bound}")
            return value

        s = cls(epochs=number("epochs", 1, integer=True), batch_size=number("batch_size", 1, integer=True),
                optimizer=dict(t.get("optimizer") or {}), scheduler=dict(t.get("scheduler") or {}), seed=seed,
                precision=str(t.get("precision", "32")), augment_shift=number("augment_shift", 0, integer=True),
                label_smoothing=float(number("label_smoothing", 0, 1, open_high=True)),
                grad_clip_norm=float(number("grad_clip_norm", 0)),
                early_stopping_patience=number("early_stopping_patience", 0, integer=True),
                channels_last=bool(t.get("channels_last", False)), compile=bool(t.get("compile", False)),
                nproc=number("nproc", 1, integer=True, default=1), privacy=privacy_from_trainer(t))
        return s


def frozen_names(names: list[str], prefixes: list[str], model_name: str) -> set[str]:
    """The weight names under each dotted prefix of `trainer.freeze` (`features` takes features.0.weight, ...);
    a prefix that names nothing is refused with the model's top-level names."""
    frozen: set[str] = set()
    for prefix in prefixes:
        hits = {n for n in names if n == prefix or n.startswith(f"{prefix}.")}
        if not hits:
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"trainer.freeze: {prefix!r} names no parameters of {model_name}; "
                              f"its top-level names are {', '.join(tops)}")
        frozen |= hits
    if prefixes:
        print(f"train: frozen {', '.join(prefixes)}", flush=True)
    return frozen
