"""The profile of the data a model was trained on: what `validate` compares new data against.

Computed by preprocess from the training split's raw feature columns (before
any fill or scaling: incoming data is raw too), stored with the model by
package, and read back by validate (`maas.validation.drift`). Per column:

- numeric (a table's numeric features, and every pixel of an image): the
  training quantiles as cut points (`drift.bins` bins, fewer when values
  repeat: a pixel that is 0 in 90% of the images has one bin for 0), the
  share of non-null values in each bin, and a summary (count, null rate,
  mean, std, min, max);
- categorical: each value's share of the non-null values, and the null rate.

and, given the label column, each class's share of the training rows (`classes`), which `maas monitor`
compares the served model's predicted classes with.

Bins are open at both ends ((-inf, c1], (c1, c2], ..., (ck, inf)), so any new
value falls in some bin: values past the training range land in the end bins.

`ProfileBuilder` accumulates chunk by chunk, so a training split larger than
memory is profiled in one pass with bounded memory. The summary and category
counts are exact; the cut points and bin shares come from a sample of at most
`sample_rows` training rows (all rows when there are fewer), the rows whose
hashed row number is smallest. The hash depends only on the row number, so the
same rows are chosen however the table is chunked: profiling in chunks gives
the profile that profiling in one piece does. Chunks must carry the rows'
numbers as their index (`maas.data.sources.iter_raw` does; so does
`frame.iloc[rows]` of a table read whole); a table whose index is not
integers is numbered in the order its rows come.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.errors import ArtifactError, ConfigError, DataValidationError

# pandas is imported where a table is read, not here: an image model's server imports this module (its
# drift gauge, maas.serving.input_drift), and an image Bento does not install pandas.
if TYPE_CHECKING:
    import pandas as pd

FORMAT = "maas.data_profile/1"
PROFILE_FILE = "profile.json"  # in paths.processed, in the Bento model's folder, and in paths.bento
DEFAULT_BINS = 10
MAX_BINS = 100
# The sample holds at most this many values (rows x numeric columns, float64: 16 MiB), and at most
# MAX_SAMPLE_ROWS rows: bin shares from 50,000 rows are within about 0.3 points of the whole split's.
SAMPLE_VALUES = 2_000_000
MAX_SAMPLE_ROWS = 50_000
MIN_SAMPLE_ROWS = 1_000


def profile_columns(data_cfg: DictConfig) -> dict[str, str]:
    """The raw feature columns to profile and their type (numeric or categorical), in input order."""
    from maas.data.sources import feature_columns

    if data_cfg.kind != "table":
        return {name: "numeric" for name in feature_columns(data_cfg)}
    from maas.data.table_preprocessor import column_settings

    return {name: column_settings(name, spec)["type"] for name, spec in data_cfg.features.items()}


def row_keys(rows: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random uint64 per row number (splitmix64's finalizer: a bijection, so no ties)."""
    z = rows.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def numeric_values(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """`names` as float64 (rows, columns), NaN where missing; text or booleans are refused, naming the column."""
    import pandas as pd

    out = np.empty((len(frame), len(names)), np.float64)
    for j, name in enumerate(names):
        if name not in frame.columns:
            raise DataValidationError(f"the table has no column {name!r}")
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or not (pd.api.types.is_numeric_dtype(column) or column.isna().all()):
            raise DataValidationError(f"column {name!r} is numeric but holds {column.dropna().iloc[0]!r}")
        out[:, j] = column.to_numpy(np.float64, na_value=np.nan)
    return out


class ProfileBuilder:
    """Accumulates a profile over chunks of rows: `update(chunk)` for each, then `result()`."""

    def __init__(self, columns: dict[str, str], bins: int = DEFAULT_BINS, sample_rows: int | None = None,
                 label_column: str | None = None):
        self.columns, self.bins, self.label_column = dict(columns), int(bins), label_column
        self._labels: dict[str, int] = {}
        self.numeric = [n for n, t in self.columns.items() if t == "numeric"]
        self.categorical = [n for n, t in self.columns.items() if t == "categorical"]
        width = max(len(self.numeric), 1)
        self.sample_rows = int(sample_rows or min(MAX_SAMPLE_ROWS, max(MIN_SAMPLE_ROWS, SAMPLE_VALUES // width)))
        self.rows = 0
        k = len(self.numeric)
        self._count, self._nulls = np.zeros(k, np.int64), np.zeros(k, np.int64)
        self._sum, self._m2 = np.zeros(k), np.zeros(k)  # m2: squared deviations from the mean (Chan et al.'s merge)
        self._min, self._max = np.full(k, np.inf), np.full(k, -np.inf)
        self._keys = np.empty(0, np.uint64)
        self._sample = np.empty((0, k))
        self._counts: dict[str, dict[str, int]] = {n: {} for n in self.categorical}
        self._cat_nulls = dict.fromkeys(self.categorical, 0)

    def update(self, frame: pd.DataFrame) -> "ProfileBuilder":
        if not len(frame):
            return self
        self.rows += len(frame)
        if self.numeric:
            x = numeric_values(frame, self.numeric)
            self._moments(x)
            keys = np.concatenate([self._keys, row_keys(self._row_numbers(frame))])
            sample = np.concatenate([self._sample, x])
            if len(keys) > self.sample_rows:
                keep = np.argpartition(keys, self.sample_rows - 1)[:self.sample_rows]
                keys, sample = keys[keep], sample[keep]
            self._keys, self._sample = keys, sample
        if self.categorical or self.label_column:
            from maas.data.table_preprocessor import count_categories
        for name in self.categorical:
            if name not in frame.columns:
                raise DataValidationError(f"the table has no column {name!r}")
            self._cat_nulls[name] += count_categories(frame[name], self._counts[name])
        if self.label_column:
            if self.label_column not in frame.columns:
                raise DataValidationError(f"the table has no label column {self.label_column!r}")
            count_categories(frame[self.label_column], self._labels)
        return self

    def _row_numbers(self, frame: pd.DataFrame) -> np.ndarray:
        import pandas as pd

        # A table stored with its own (say, text) index has no row numbers: number its rows as they come.
        if pd.api.types.is_integer_dtype(frame.index):
            return np.asarray(frame.index, dtype=np.int64)
        return np.arange(self.rows - len(frame), self.rows, dtype=np.int64)

    def _moments(self, x: np.ndarray) -> None:
        present = ~np.isnan(x)
        n = present.sum(0)
        self._nulls += len(x) - n
        if not n.any():
            return
        total = np.where(present, x, 0.0).sum(0)
        mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
        m2 = np.where(present, (x - mean) ** 2, 0.0).sum(0)
        old = self._count
        old_mean = np.divide(self._sum, old, out=np.zeros_like(self._sum), where=old > 0)
        both = old + n
        delta = mean - old_mean
        self._m2 += m2 + np.divide(delta * delta * old * n, both, out=np.zeros_like(delta), where=both > 0)
        self._count, self._sum = both, self._sum + total
        self._min = np.fmin(self._min, np.where(present, x, np.inf).min(0))
        self._max = np.fmax(self._max, np.where(present, x, -np.inf).max(0))

    def result(self) -> dict[str, Any]:
        columns: dict[str, dict] = {}
        inner = np.linspace(0, 1, self.bins + 1)[1:-1]
        for j, name in enumerate(self.numeric):
            n = int(self._count[j])
            values = self._sample[:, j]
            values = values[~np.isnan(values)]
            cuts = np.unique(np.quantile(values, inner)) if values.size else np.empty(0)
            counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
            columns[name] = {
                "type": "numeric", "count": n, "null_rate": _share(int(self._nulls[j]), self.rows),
                "mean": float(self._sum[j] / n) if n else None,
                "std": float((self._m2[j] / n) ** 0.5) if n else None,
                "min": float(self._min[j]) if n else None, "max": float(self._max[j]) if n else None,
                "cuts": cuts.tolist(), "proportions": (counts / max(values.size, 1)).tolist()}
        for name in self.categorical:
            counts = self._counts[name]
            n = sum(counts.values())
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            columns[name] = {"type": "categorical", "count": n,
                             "null_rate": _share(self._cat_nulls[name], self.rows),
                             "frequencies": {v: c / n for v, c in ranked}}
        ordered = {name: columns[name] for name in self.columns}
        out = {"format": FORMAT, "rows": self.rows, "bins": self.bins, "sample_rows": int(len(self._keys)),
               "columns": ordered}
        if self.label_column:
            labelled = sum(self._labels.values())
            # Keyed by the class index as text (JSON keys), in class order.
            out["classes"] = {k: n / labelled for k, n in sorted(self._labels.items(), key=lambda kv: class_order(kv[0]))}
        return out


def class_order(key: str) -> tuple:
    """Sort key of a class written as text: numbers by value (2 before 10), then any others by name."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def build_profile(frames: pd.DataFrame | Iterable[pd.DataFrame], columns: dict[str, str],
                  bins: int = DEFAULT_BINS, label_column: str | None = None) -> dict[str, Any]:
    """The profile of one DataFrame or an iterable of chunks (their index: the rows' numbers)."""
    import pandas as pd

    builder = ProfileBuilder(columns, bins, label_column=label_column)
    for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
        builder.update(frame)
    return builder.result()


def profile_bins(cfg: DictConfig) -> int:
    value = OmegaConf.select(cfg, "drift.bins", default=DEFAULT_BINS)
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_BINS:
        raise ConfigError(f"drift.bins={value!r} must be a whole number in [2, {MAX_BINS}]")
    return value


def training_profile(frames: pd.DataFrame | Iterable[pd.DataFrame], cfg: DictConfig) -> dict[str, Any]:
    """preprocess's one call: the profile of the training rows (a DataFrame or an iterable of its chunks)."""
    return build_profile(frames, profile_columns(cfg.data), profile_bins(cfg), cfg.data.label_column)


def pixel_order(profile: dict[str, Any]) -> list[str]:
    """An image profile's columns in the model's input order (row-major pixels). The stored file keeps keys
    sorted by name (pixel_10 before pixel_2); pixel columns end in their index."""
    import re

    def index(name: str) -> int:
        found = re.search(r"(\d+)$", name)
        if found is None:
            raise ArtifactError(f"profile column {name!r} is not an image's pixel column (<prefix><index>)")
        return int(found.group(1))

    return sorted(profile["columns"], key=index)


def load_profile(path: str | Path) -> dict[str, Any]:
    """A stored profile, checked enough that comparing against it can't fail halfway."""
    path = Path(path)
    try:
        blob = io.read_json(path)
    except ValueError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("columns"), dict):
        raise ArtifactError(f"{path} is not a maas data profile ({FORMAT})")
    for name, c in blob["columns"].items():
        ok = (c.get("type") == "numeric" and len(c.get("proportions") or []) == len(c.get("cuts") or []) + 1
              or c.get("type") == "categorical" and isinstance(c.get("frequencies"), dict))
        if not ok:
            raise ArtifactError(f"{path}: column {name!r} is not a valid profile entry")
    return blob
