"""`maas expectations suggest`: profile the raw data into a starting suite file the user edits.

What it writes holds for the data it profiled (a test checks the round trip):
the columns, row count bounds, the label set, and per feature column a not-null
and either a value set (categorical, or an integer column with few values) or
a min..max range rounded outward. The data is read in chunks of data.chunk_rows,
so a table larger than memory can be profiled. No GX here: it only writes YAML.

(Outside validation/, which is `validate`'s code dependency in dvc.yaml: a
change here must not re-run validate.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig

from maas.data.sources import feature_columns, iter_raw, raw_file
from maas.errors import DataValidationError

LOW_CARDINALITY = 10   # a whole-number column with at most this many values gets a value set, not a range
MAX_SET = 1000         # more distinct values than this: no set is suggested (the label is then not a class index)
SIGNIFICANT = 2        # ranges are rounded outward to this many significant digits


@dataclass
class ColumnProfile:
    rows: int = 0
    nulls: int = 0
    kind: str = "int"  # int | float | text: the widest seen in any chunk
    low: Any = None
    high: Any = None
    values: set | None = field(default_factory=set)  # None once more than MAX_SET were seen

    def update(self, s: pd.Series) -> None:
        self.rows += len(s)
        self.nulls += int(s.isna().sum())
        present = s.dropna()
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
            kind = "int"
        elif pd.api.types.is_numeric_dtype(s):
            kind = "float"
        else:
            kind = "text"
        first = self.rows == len(s)
        self.kind = kind if first else max(self.kind, kind, key=("int", "float", "text").index)
        if kind != "text" and len(present):
            lo, hi = present.min(), present.max()
            self.low = lo if self.low is None else min(self.low, lo)
            self.high = hi if self.high is None else max(self.high, hi)
        if self.values is not None:
            self.values.update(_python(v) for v in pd.unique(present))
            if len(self.values) > MAX_SET:
                self.values = None

    def sorted_values(self) -> list:
        return sorted(self.values, key=lambda v: (type(v).__name__, v))


def _python(v: Any) -> Any:
    """numpy scalars as plain Python ones, so YAML writes `3`, not a numpy object."""
    return v.item() if hasattr(v, "item") else v


def profile(cfg: DictConfig) -> tuple[list[str], dict[str, ColumnProfile]]:
    """Every raw column's profile, and the raw columns in file order."""
    columns: list[str] = []
    profiles: dict[str, ColumnProfile] = {}
    for chunk in iter_raw(cfg):
        if not columns:
            columns = [str(c) for c in chunk.columns]
        for col in chunk.columns:
            profiles.setdefault(str(col), ColumnProfile()).update(chunk[col])
    if not columns or not next(iter(profiles.values())).rows:
        raise DataValidationError(f"{raw_file(cfg)} holds no rows to profile")
    return columns, profiles


def nice_floor(x: float, sig: int = SIGNIFICANT) -> float:
    return _nice(x, sig, math.floor)


def nice_ceil(x: float, sig: int = SIGNIFICANT) -> float:
    return _nice(x, sig, math.ceil)


def _nice(x: float, sig: int, direction) -> float | int:
    """`x` rounded in `direction` to `sig` significant digits (11.03 -> 11, 0.1634 -> 0.17, 1680 -> 1700)."""
    if x == 0 or not math.isfinite(x):
        return _tidy(x)
    exp = math.floor(math.log10(abs(x))) - (sig - 1)
    out = round(direction(x / 10**exp) * 10**exp, max(0, -exp))
    # Float noise must never move the bound inward past the value it bounds.
    if (direction is math.floor and out > x) or (direction is math.ceil and out < x):
        out = x
    return _tidy(out)


def _tidy(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 1e15 else float(x)


def _flow(obj: Any) -> str:
    """One YAML flow mapping or list on one line; `${` escaped so OmegaConf reads it as text."""
    def escape(v):
        if isinstance(v, str):
            return v.replace("${", "\\${")
        if isinstance(v, list):
            return [escape(x) for x in v]
        if isinstance(v, dict):
            return {k: escape(x) for k, x in v.items()}
        return v

    text = yaml.safe_dump(escape(obj), default_flow_style=True, sort_keys=False, width=10**9)
    return text.removesuffix("\n...\n").strip()  # a plain scalar ends its document with `...`


def _shown(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def suggest(cfg: DictConfig, suite_name: str, warn=lambda msg: None) -> str:
    """The suite file's text. `warn` hears of what the data config makes fail on this data
    (undeclared categories, nulls where data.features says missing: fail): suggest can't fix those."""
    data = cfg.data
    columns, profiles = profile(cfg)
    features = feature_columns(data)
    label = str(data.label_column)
    declared = [*features, label]
    missing = [c for c in declared if c not in profiles]
    if missing:
        raise DataValidationError(
            f"{raw_file(cfg)} lacks column(s) {missing[:5]}{'...' if len(missing) > 5 else ''} that the data config "
            f"declares ({'data.features' if data.kind == 'table' else 'data.image_shape'} and data.label_column): "
            "fix those first, then suggest")
    extra = [c for c in columns if c not in set(declared)]
    rows = profiles[label].rows
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        warn(msg)

    lp = profiles[label]
    if lp.values is None:
        raise DataValidationError(f"column {label!r} (data.label_column) holds more than {MAX_SET} values: "
                                  "not class indices")
    if lp.nulls:
        note(f"{label} (the label) has {lp.nulls} missing value(s): the suite refuses any")

    lines = [
        f"# A starting Great Expectations suite for {raw_file(cfg)}, written by `maas expectations suggest`",
        f"# from its {rows} rows. Everything below holds for that data: tighten what must hold, loosen what",
        "# may vary, delete what doesn't matter. Saved as conf/expectations/<name>.yaml it is chosen with",
        "# `expectations=<name>` (suite_name is what the Data Docs call it).",
        "# Shorthand keys (maas's own) come first; `expect:` lists any Great Expectations 1.x expectation",
        "# by its type name with its arguments (https://greatexpectations.io/expectations/).",
        f"suite_name: {_flow(suite_name)}",
    ]

    def key(text: str, comment: str = "") -> None:
        lines.append(f"{text:<24}  # {comment}" if comment else text)

    if extra:
        key("exact_columns: false", f"the data also holds {_flow(extra[:10])}{'...' if len(extra) > 10 else ''}, "
            "which the model doesn't read")
    else:
        key("exact_columns: true", "exactly the data config's columns and the label, no others")
    key(f"label_set: {_flow(lp.sorted_values())}", "the labels seen")
    key(f"min_rows: {max(1, int(nice_floor(rows // 2)))}",
        f"{rows} rows seen: a file half as long is probably cut short")
    key(f"max_rows: {int(nice_ceil(rows * 10))}")
    expect: list[str] = []
    if data.kind == "table":
        from maas.data.table_preprocessor import column_settings

        for name in features:
            expect.extend(_table_column(name, profiles[name], column_settings(name, data.features[name]), note))
    else:
        lo = min((profiles[c].low for c in features if profiles[c].low is not None), default=0)
        hi = max((profiles[c].high for c in features if profiles[c].high is not None), default=0)
        nulls = sum(profiles[c].nulls for c in features)
        if nulls:
            note(f"the pixel columns hold {nulls} missing value(s): the suite refuses any")
        key(f"feature_count: {len(features)}", f"data.image_shape {list(data.image_shape)}")
        key(f"feature_min: {nice_floor(lo)}", f"every pixel, not-null and in feature_min..feature_max: seen "
            f"{_shown(_python(lo))} .. {_shown(_python(hi))}")
        key(f"feature_max: {nice_ceil(hi)}",
            f"data.feature_range (what requests may send) is {list(data.feature_range)}")
    if [e for e in expect if not e.lstrip().startswith("#")]:
        lines.append("expect:")
        lines.extend(expect)
    else:
        lines.extend(e.strip() for e in expect)
        lines.append("expect: []")
    if notes:
        lines.append("# The data config makes this suite fail on the data it was suggested from:")
        lines.extend(f"#   {n}" for n in notes)
    return "\n".join(lines) + "\n"


def _table_column(name: str, p: ColumnProfile, settings: dict, note) -> list[str]:
    seen = p.rows - p.nulls
    out = [f"  # {name}: {settings['type']}, missing: {settings['missing']}; "
           f"{p.nulls} of {p.rows} missing" + (f", {_shown(_python(p.low))} .. {_shown(_python(p.high))}"
                                               if p.low is not None else "")]
    if p.nulls and settings["missing"] == "fail":
        note(f"{name} has {p.nulls} missing value(s) but data.features.{name}.missing is fail")
    if settings["missing"] != "fail":  # else data.features already refuses nulls
        if not p.nulls:
            out.append(f"  - expect_column_values_to_not_be_null: {_flow({'column': name})}")
        elif seen:
            # The share of non-null values seen, rounded down: what the data has, no stricter.
            mostly = math.floor(seen / p.rows * 100) / 100
            out.append(f"  - expect_column_values_to_not_be_null: {_flow({'column': name, 'mostly': mostly})}"
                       "  # the preprocessor fills the gaps")
    if not seen:
        return out
    if settings["type"] == "categorical":
        undeclared = [v for v in p.sorted_values() if str(v) not in {str(c) for c in settings["categories"]}] \
            if p.values is not None else []
        if undeclared:
            note(f"{name} holds {undeclared[:10]} beyond data.features.{name}.categories")
        out.append(f"  # its set of values is data.features.{name}.categories")
        return out
    if p.kind == "text":
        note(f"{name} is numeric in data.features but holds text")
        return out
    values = p.sorted_values() if p.values is not None and len(p.values) <= LOW_CARDINALITY else None
    # A CSV integer column with gaps reads as float: whole numbers are still a few integer values.
    if values is not None and all(isinstance(v, bool) or float(v).is_integer() for v in values):
        values = [v if isinstance(v, bool) else _tidy(v) for v in values]
        out.append(f"  - expect_column_values_to_be_in_set: {_flow({'column': name, 'value_set': values})}")
        return out
    low, high = float(p.low), float(p.high)
    out.append("  - expect_column_values_to_be_between: "
               + _flow({"column": name, "min_value": nice_floor(low), "max_value": nice_ceil(high)}))
    return out


def default_name(cfg: DictConfig) -> str:
    """`<data file>_suggested`: conf/expectations/wine_suggested.yaml, chosen with expectations=wine_suggested."""
    return f"{Path(raw_file(cfg)).stem}_suggested"
