"""Feature scaling fitted on the training split only, saved as plain JSON.

JSON (not a pickled scikit-learn object) so the serving bundle can load it
without executing anything, and a person can read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maas import io
from maas.errors import ArtifactError, ConfigError

KINDS = ("standard", "minmax", "none")


@dataclass(frozen=True)
class Preprocessor:
    kind: str
    image_shape: tuple[int, int, int]
    offset: list[float]  # subtracted per feature
    scale: list[float]   # then divided per feature
    raw_min: float       # the raw value range requests may use (the data's declared range)
    raw_max: float

    @classmethod
    def fit(cls, features: np.ndarray, kind: str, image_shape,
            value_range: tuple[float, float] | None = None) -> "Preprocessor":
        """Fit on `features`; `value_range` is the raw range requests may use (default: the one seen)."""
        if kind not in KINDS:
            raise ConfigError(f"data.scaling={kind!r} is not allowed; choose one of {list(KINDS)}")
        x = features.astype(np.float64)
        n = x.shape[1]
        if kind == "standard":
            offset, scale = x.mean(axis=0), x.std(axis=0)
        elif kind == "minmax":
            offset, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        else:
            offset, scale = np.zeros(n), np.ones(n)
        # Constant pixels (the digits' border) would divide by zero; leave them centred.
        scale = np.where(scale < 1e-8, 1.0, scale)
        low, high = value_range if value_range is not None else (x.min(), x.max())
        return cls(kind, tuple(int(d) for d in image_shape), offset.tolist(), scale.tolist(), float(low), float(high))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(rows, C*H*W) raw features -> (rows, C, H, W) float32 model inputs."""
        x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
        if x.shape[1] != len(self.offset):
            raise ArtifactError(f"expected {len(self.offset)} features per row, got {x.shape[1]}")
        x = (x - np.asarray(self.offset, np.float32)) / np.asarray(self.scale, np.float32)
        return x.reshape(len(x), *self.image_shape)

    def save(self, path: str | Path) -> Path:
        return io.write_json(path, {"format": "maas.preprocessor/1", **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> "Preprocessor":
        blob = io.read_json(io.require(path, "preprocessor"))
        if blob.pop("format", None) != "maas.preprocessor/1":
            raise ArtifactError(f"{path} is not a maas preprocessor file")
        blob["image_shape"] = tuple(blob["image_shape"])
        return cls(**blob)
