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
# The raw pixels' type (`data.feature_type`): what a request may send is checked against it.
RAW_DTYPES = ("int", "float")


@dataclass(frozen=True)
class Preprocessor:
    kind: str
    image_shape: tuple[int, int, int]
    offset: list[float]  # subtracted per feature
    scale: list[float]   # then divided per feature
    raw_min: float       # the raw value range requests may use (the data's declared range)
    raw_max: float
    raw_dtype: str = "float"  # "int" | "float"; older files lack it and keep accepting numbers of either type

    @classmethod
    def fit(cls, features: np.ndarray, kind: str, image_shape,
            value_range: tuple[float, float] | None = None, raw_dtype: str = "float") -> "Preprocessor":
        """Fit on `features`; `value_range` is the raw range requests may use (default: the one seen),
        `raw_dtype` the raw values' type ("int" or "float")."""
        if kind not in KINDS:
            raise ConfigError(f"data.scaling={kind!r} is not allowed; choose one of {list(KINDS)}")
        x = features.astype(np.float64)
        check_dtype(x, raw_dtype)
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
        return cls(kind, tuple(int(d) for d in image_shape), offset.tolist(), scale.tolist(), float(low), float(high),
                   raw_dtype)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.image_shape

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(rows, C*H*W) raw features -> (rows, C, H, W) float32 model inputs."""
        x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
        if x.shape[1] != len(self.offset):
            raise ArtifactError(f"expected {len(self.offset)} features per row, got {x.shape[1]}")
        x = (x - np.asarray(self.offset, np.float32)) / np.asarray(self.scale, np.float32)
        return x.reshape(len(x), *self.image_shape)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """(rows, C, H, W) model inputs -> (rows, C*H*W) raw features, undoing `transform`."""
        rows = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return rows * np.asarray(self.scale, np.float32) + np.asarray(self.offset, np.float32)

    def add_noise(self, x: np.ndarray, std: float, seed: int) -> np.ndarray:
        """The same model inputs with Gaussian noise of `std` added to their raw pixels, kept to the raw
        range and type (what a noisy sensor would send), then transformed again."""
        raw = self.inverse(x) + np.random.default_rng(seed).normal(0.0, std, size=(len(x), len(self.offset)))
        raw = np.clip(raw, self.raw_min, self.raw_max)
        return self.transform(np.round(raw) if self.raw_dtype == "int" else raw)

    def save(self, path: str | Path) -> Path:
        return io.write_json(path, {"format": "maas.preprocessor/1", **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> "Preprocessor":
        blob = io.read_json(io.require(path, "preprocessor"))
        if blob.pop("format", None) != "maas.preprocessor/1":
            raise ArtifactError(f"{path} is not a maas preprocessor file")
        blob["image_shape"] = tuple(blob["image_shape"])
        if blob.get("raw_dtype", "float") not in RAW_DTYPES:
            raise ArtifactError(f"{path}: raw_dtype={blob['raw_dtype']!r} is not one of {list(RAW_DTYPES)}")
        return cls(**blob)


def check_dtype(x: np.ndarray, raw_dtype: str) -> None:
    """Refuse a type that is not one of RAW_DTYPES, or "int" for data that holds fractions."""
    if raw_dtype not in RAW_DTYPES:
        raise ConfigError(f"data.feature_type={raw_dtype!r} is not allowed; choose one of {list(RAW_DTYPES)}")
    fractional = x[np.isfinite(x) & (x != np.round(x))]
    if raw_dtype == "int" and fractional.size:
        raise ConfigError(f"data.feature_type=int but the training features hold fractions "
                          f"(e.g. {fractional[0]:g}); declare feature_type: float")


# table_preprocessor.FORMAT, spelled out: that module imports pandas, which an image model's Bento neither
# needs nor pins, so it is imported only for a table's file.
TABLE_FORMAT = "maas.table_preprocessor/1"


def load_preprocessor(path: str | Path):
    """The image Preprocessor or the TablePreprocessor a preprocessor.json holds, by its format."""
    blob = io.read_json(io.require(path, "preprocessor"))
    if isinstance(blob, dict) and blob.get("format") == TABLE_FORMAT:
        from maas.data.table_preprocessor import TablePreprocessor

        return TablePreprocessor.load(path)
    return Preprocessor.load(path)
