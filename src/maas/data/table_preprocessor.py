"""A table's preprocessing, fitted on the training rows only, saved as plain JSON.

Per declared feature column (`data.features`): the missing-value policy, then
for a numeric column scaling (`data.scaling`), for a categorical one a one-hot
encoding over its declared categories. The model gets one float32 vector per
row, shaped (1, 1, width) like a one-pixel-high image so every backend and
exporter keeps its (C, H, W) input. JSON, not a pickled scikit-learn object:
the Bento loads it without executing anything, and a person can read it.

Fitting accumulates per chunk (`TableStats`), so a training split larger than
memory can be fitted in one pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maas import io
from maas.errors import ArtifactError, ConfigError, DataValidationError

FORMAT = "maas.table_preprocessor/1"
TYPES = ("numeric", "categorical")
# `median` would need every value of the column at once; the policies here are one pass over chunks.
MISSING = {"numeric": ("fail", "mean", "constant"), "categorical": ("fail", "most_frequent", "constant")}
SCALINGS = ("standard", "minmax", "none")


def column_settings(name: str, spec: Any) -> dict:
    """One `data.features` entry, checked: {type, missing, fill, categories}."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"type", "missing", "fill", "categories"})
    if unknown:
        raise ConfigError(f"data.features.{name} has unknown key(s) {unknown}; "
                          "allowed: type, missing, fill, categories")
    kind = spec.get("type", "numeric")
    if kind not in TYPES:
        raise ConfigError(f"data.features.{name}.type={kind!r}; choose one of {list(TYPES)}")
    missing = spec.get("missing", "fail")
    if missing not in MISSING[kind]:
        raise ConfigError(f"data.features.{name}.missing={missing!r} is not allowed for a {kind} column; "
                          f"choose one of {list(MISSING[kind])}")
    if missing == "constant" and spec.get("fill") is None:
        raise ConfigError(f"data.features.{name}.missing=constant needs data.features.{name}.fill")
    categories = list(spec.get("categories") or [])
    if kind == "categorical":
        if not categories:
            raise ConfigError(f"data.features.{name} is categorical: list its values in "
                              f"data.features.{name}.categories (they fix the model's input width)")
        if len({category_key(c) for c in categories}) != len(categories):
            raise ConfigError(f"data.features.{name}.categories has repeated values: {categories}")
    elif categories:
        raise ConfigError(f"data.features.{name} is numeric; categories apply to categorical columns")
    return {"type": kind, "missing": missing, "fill": spec.get("fill"), "categories": categories}


def encoded_width(features: Any) -> int:
    """The model's input width for `data.features`: one per numeric column, one per category."""
    if not features:
        raise ConfigError("data.features is empty: a table needs at least one feature column")
    settings = [column_settings(name, spec) for name, spec in dict(features).items()]
    return sum(len(s["categories"]) if s["type"] == "categorical" else 1 for s in settings)


@dataclass
class _Numeric:
    count: int = 0
    total: float = 0.0
    squares: float = 0.0  # sum of squared deviations from the running mean (Chan et al.'s merge)
    low: float = float("inf")
    high: float = float("-inf")

    def update(self, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if not values.size:
            return
        n, mean = values.size, float(values.mean())
        dev = float(((values - mean) ** 2).sum())
        if self.count:
            old_mean = self.total / self.count
            delta = mean - old_mean
            self.squares += dev + delta * delta * self.count * n / (self.count + n)
        else:
            self.squares = dev
        self.count += n
        self.total += float(values.sum())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))


@dataclass
class TableStats:
    """What fitting needs, accumulated chunk by chunk."""

    features: dict[str, dict]
    numeric: dict[str, _Numeric] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # categorical: value (as text) -> rows

    def update(self, frame: pd.DataFrame) -> None:
        for name, s in self.features.items():
            if name not in frame.columns:
                raise DataValidationError(f"the table has no column {name!r} (declared in data.features)")
            column = frame[name]
            if s["type"] == "numeric":
                self.numeric.setdefault(name, _Numeric()).update(_as_float(column, name))
            else:
                count_categories(column, self.counts.setdefault(name, {}))


@dataclass(frozen=True)
class TablePreprocessor:
    kind: str                       # data.scaling
    columns: list[dict[str, Any]]   # per feature, in input order: name, type, missing, fill, offset, scale, categories
    classes: list[int]
    input_shape: tuple[int, int, int] = (1, 1, 0)

    @classmethod
    def fit(cls, frames, features: Any, scaling: str, num_classes: int) -> "TablePreprocessor":
        """Fit on the training rows: one DataFrame or an iterable of chunks."""
        if scaling not in SCALINGS:
            raise ConfigError(f"data.scaling={scaling!r} is not allowed; choose one of {list(SCALINGS)}")
        settings = {name: column_settings(name, spec) for name, spec in dict(features).items()}
        stats = TableStats(settings)
        for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
            stats.update(frame)
        columns = []
        for name, s in settings.items():
            col = {"name": name, **s, "offset": 0.0, "scale": 1.0}
            if s["type"] == "numeric":
                st = stats.numeric.get(name, _Numeric())
                if not st.count:
                    raise DataValidationError(f"column {name!r} has no values in the training rows")
                mean, std = st.total / st.count, (st.squares / st.count) ** 0.5
                if s["missing"] == "mean":
                    col["fill"] = mean
                if scaling == "standard":
                    col["offset"], col["scale"] = mean, std
                elif scaling == "minmax":
                    col["offset"], col["scale"] = st.low, st.high - st.low
                # A constant column would divide by zero; leave it centred.
                col["scale"] = col["scale"] if col["scale"] >= 1e-12 else 1.0
            else:
                col["categories"] = list(s["categories"])
                if s["missing"] == "most_frequent":
                    counts = stats.counts.get(name, {})
                    known = [c for c in col["categories"] if counts.get(category_key(c))]
                    if not known:
                        raise DataValidationError(f"column {name!r} has none of its declared categories "
                                                  "in the training rows")
                    col["fill"] = max(known, key=lambda c: counts[category_key(c)])  # ties: the first declared
            columns.append(col)
        width = sum(len(c["categories"]) if c["type"] == "categorical" else 1 for c in columns)
        return cls(scaling, columns, list(range(int(num_classes))), (1, 1, width))

    @property
    def feature_names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows (a DataFrame with the feature columns) -> (rows, 1, 1, width) float32 model inputs.
        A missing value where the column's policy is `fail`, or a category not declared, raises
        DataValidationError naming the column and the first row."""
        parts = []
        for c in self.columns:
            if c["name"] not in frame.columns:
                raise DataValidationError(f"the rows have no column {c['name']!r}")
            column = frame[c["name"]]
            if c["type"] == "numeric":
                x = _as_float(column, c["name"])
                x = self._fill(c, x, np.isnan(x), frame.index)
                parts.append(((x - c["offset"]) / c["scale"])[:, None])
            else:
                parts.append(self._one_hot(c, column, frame.index))
        out = np.concatenate(parts, axis=1).astype(np.float32)
        return out.reshape(len(out), *self.input_shape)

    @staticmethod
    def _fill(c: dict, x: np.ndarray, missing: np.ndarray, index) -> np.ndarray:
        if not missing.any():
            return x
        if c["missing"] == "fail":
            raise DataValidationError(f"column {c['name']!r} is missing a value at row {index[missing.argmax()]} "
                                      f"and data.features.{c['name']}.missing=fail")
        return np.where(missing, float(c["fill"]), x)

    @staticmethod
    def _one_hot(c: dict, column: pd.Series, index) -> np.ndarray:
        lookup = {category_key(v): i for i, v in enumerate(c["categories"])}
        missing = column.isna().to_numpy()
        if missing.any():
            if c["missing"] == "fail":
                raise DataValidationError(f"column {c['name']!r} is missing a value at row "
                                          f"{index[missing.argmax()]} and data.features.{c['name']}.missing=fail")
            column = column.where(~missing, c["fill"])
        codes = _keys(column).map(lookup)
        unknown = codes.isna().to_numpy()
        if unknown.any():
            first = int(unknown.argmax())
            raise DataValidationError(f"column {c['name']!r} has {column.iloc[first]!r} at row {index[first]}, "
                                      f"not one of its categories {c['categories']}")
        out = np.zeros((len(column), len(c["categories"])), np.float32)
        out[np.arange(len(column)), codes.to_numpy(np.int64)] = 1.0
        return out

    def save(self, path: str | Path) -> Path:
        return io.write_json(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> "TablePreprocessor":
        blob = io.read_json(io.require(path, "preprocessor"))
        if blob.pop("format", None) != FORMAT:
            raise ArtifactError(f"{path} is not a maas table preprocessor file")
        try:
            pre = cls(blob["kind"], blob["columns"], blob["classes"], tuple(blob["input_shape"]))
            for c in pre.columns:
                column_settings(c["name"], {k: c[k] for k in ("type", "missing", "fill", "categories")})
                float(c["offset"]), float(c["scale"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ArtifactError(f"{path} is not a valid table preprocessor: {e}") from e
        return pre


def _as_float(column: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for missing; text or booleans are refused, naming the column."""
    if pd.api.types.is_bool_dtype(column):
        raise DataValidationError(f"column {name!r} is numeric but holds booleans (e.g. {column.iloc[0]!r} at row "
                                  f"{column.index[0]})")
    if not pd.api.types.is_numeric_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() & column.notna() | column.map(lambda v: isinstance(v, bool))
        if bad.any():
            first = bad.to_numpy().argmax()
            raise DataValidationError(f"column {name!r} is numeric but holds {column.iloc[first]!r} at row "
                                      f"{column.index[first]}")
        column = numbers
    return column.to_numpy(np.float64, na_value=np.nan)


def category_key(value: Any) -> str:
    """A category as text, the same for 2, 2.0 and "2": a column of integers with a gap reads as floats."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _keys(column: pd.Series) -> pd.Series:
    """category_key of every (non-missing) value, vectorized where the column is numeric."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(np.float64)
        if np.all(values == np.round(values)):
            return pd.Series(values.astype(np.int64).astype(str), index=column.index)
    return column.map(category_key)


def count_categories(column: pd.Series, counts: dict[str, int]) -> int:
    """Add the column's values to `counts` by category_key (a column with a gap reads as floats: its 2.0
    is the 2 of a column without one); return how many values are missing."""
    for value, n in _keys(column.dropna()).value_counts().items():
        counts[value] = counts.get(value, 0) + int(n)
    return int(column.isna().sum())
