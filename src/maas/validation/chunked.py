"""Run a Great Expectations suite over a table chunk by chunk, in memory bounded by the chunk.

GX validates a pandas DataFrame whole: the table must fit in memory, and its
per-metric overhead makes it slow on big tables. Here the suite's expectations
are evaluated one chunk at a time, with GX's own semantics:

- a column map expectation (one verdict per row: not null, between, in set,
  regex, type, ...) runs GX's own pandas condition function, looked up in GX's
  metric registry, on each chunk's column, with GX's null filtering; counts and
  the first unexpected values are summed across chunks;
- a table or column aggregate expectation gets its metrics (row count, columns,
  min, max, mean, sum, standard deviation, non-null share) merged across chunks;
- the verdict and the result (mostly, strict bounds, observed values) then come
  from the expectation's own `_validate`, given those metrics, as GX would
  after computing them on the whole table.

An expectation that needs the whole column at once (unique values, median,
quantiles, distinct value sets, ordering) or a row condition is not chunkable:
`ChunkedValidation(suite)` raises ConfigError naming it, or, with
`partial=True`, leaves it out and lists it in `.skipped` (the caller then runs
GX on it in memory).

With `feed(chunk, quarantine=True)`, rows failing a column map expectation are
held back: `feed` returns their reasons, and every expectation is evaluated on
the remaining rows only.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from maas.errors import ConfigError
from maas.validation.report import failure_entry, jsonable, statistics

# Map metrics whose verdict for a row depends on that row's value alone, so a chunk's verdicts
# are the table's. `column_values.unique` (duplicates across chunks) and the ordering ones are not.
ROW_LOCAL = frozenset({
    "column_values.nonnull", "column_values.null",
    "column_values.between", "column_values.in_set", "column_values.not_in_set",
    "column_values.match_regex", "column_values.not_match_regex",
    "column_values.match_regex_list", "column_values.not_match_regex_list",
    "column_values.of_type", "column_values.in_type_list",
    "column_values.value_length.between", "column_values.value_length.equals",
    "column_values.match_strftime_format", "column_values.dateutil_parseable",
    "column_values.json_parseable",
})
TABLE_METRICS = frozenset({"table.row_count", "table.columns", "table.column_count", "table.column_types"})
COLUMN_METRICS = frozenset({"column.min", "column.max", "column.mean", "column.sum", "column.standard_deviation",
                            "column.non_null_proportion"})
PARTIAL_COUNT = 20  # GX's SUMMARY result format keeps the first 20 unexpected values
RESULT_FORMAT = {"result_format": "SUMMARY"}


def missing_column(column: str) -> str:
    return f'Error: The column "{column}" in BatchData does not exist.'


def _condition(metric: str):
    """GX's pandas condition function for a map metric, and its provider class."""
    from great_expectations.expectations.registry import _registered_metrics

    provider_cls, fn = _registered_metrics[f"{metric}.condition"]["providers"]["PandasExecutionEngine"]
    return provider_cls, inspect.unwrap(fn)


def _value_kwargs(expectation, metric: str) -> tuple[dict, dict]:
    """The domain and value arguments GX hands the metric for this expectation."""
    from great_expectations.expectations.registry import get_metric_kwargs

    kw = get_metric_kwargs(metric, configuration=expectation.configuration)
    return dict(kw.get("metric_domain_kwargs") or {}), dict(kw.get("metric_value_kwargs") or {})


@dataclass
class _MapCheck:
    """One column map expectation, summed over chunks."""

    expectation: Any
    column: str
    metric: str
    provider: Any
    fn: Any
    value_kwargs: dict
    filter_nulls: bool
    length_fn: Any = None           # value_length metrics compare the lengths GX computes first
    unexpected: int = 0
    partial: list = field(default_factory=list)
    quarantined: int = 0
    quarantined_values: list = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.expectation.expectation_type} on {self.column}"

    def unexpected_mask(self, column: pd.Series) -> np.ndarray:
        """Per row of the chunk: does it fail? (Nulls never fail a filtered metric, as in GX.)"""
        if self.filter_nulls:
            present = column.notna().to_numpy()
            domain = column if present.all() else column[present]
        else:
            present, domain = None, column
        kwargs = dict(self.value_kwargs)
        if self.length_fn is not None:
            kwargs["_metrics"] = {"column_values.value_length.map": (self.length_fn(self.provider, domain), None, None)}
        else:
            kwargs["_metrics"] = {}
        ok = np.asarray(self.fn(self.provider, domain, **kwargs))
        bad = ~(ok if ok.dtype == bool else ok.astype(bool))
        if present is None or len(domain) == len(column):
            return bad
        mask = np.zeros(len(column), dtype=bool)
        mask[present] = bad
        return mask

    def count(self, column: pd.Series, mask: np.ndarray) -> None:
        n = int(mask.sum())
        if n:
            self.unexpected += n
            if len(self.partial) < PARTIAL_COUNT:
                self.partial.extend(column[mask].iloc[:PARTIAL_COUNT - len(self.partial)].tolist())

    def hold_back(self, column: pd.Series, mask: np.ndarray) -> None:
        n = int(mask.sum())
        self.quarantined += n
        if n and len(self.quarantined_values) < PARTIAL_COUNT:
            self.quarantined_values.extend(
                column[mask].iloc[:PARTIAL_COUNT - len(self.quarantined_values)].tolist())


@dataclass
class _ColumnStats:
    """What the column aggregate metrics need, merged over chunks (Chan et al. for the variance)."""

    rows: int = 0
    count: int = 0                 # non-null values
    total: Any = 0                 # their sum (mean, sum)
    mean: float = 0.0              # their running mean and squared deviations (standard deviation)
    squares: float = 0.0
    low: Any = None
    high: Any = None
    errors: dict[str, str] = field(default_factory=dict)  # metric -> what computing it raised, as in GX

    def update(self, column: pd.Series, wanted: set[str]) -> None:
        self.rows += len(column)
        values = column.dropna()
        if not len(values):
            return
        numeric = pd.api.types.is_numeric_dtype(values)
        self._try(wanted & {"column.min"}, lambda: self._extreme(values.min(), low=True))
        self._try(wanted & {"column.max"}, lambda: self._extreme(values.max(), low=False))
        # Text has no mean: pandas raises, in GX's metric too; the sum alone would concatenate it.
        self._try(wanted & {"column.mean", "column.sum"},
                  lambda: self._add(values if numeric or "column.mean" not in wanted else values.mean()))
        self._try(wanted & {"column.standard_deviation"},
                  lambda: self._spread(values if numeric else values.std()))
        self.count += len(values)

    def _try(self, metrics: set[str], step) -> None:
        if not metrics or metrics & set(self.errors):
            return
        try:
            step()
        except (TypeError, ValueError) as e:
            for m in metrics:
                self.errors[m] = str(e) or type(e).__name__

    def _extreme(self, value: Any, low: bool) -> None:
        current = self.low if low else self.high
        if current is None or (value < current if low else value > current):
            if low:
                self.low = value
            else:
                self.high = value

    def _add(self, values: pd.Series) -> None:
        self.total = self.total + values.sum()

    def _spread(self, values: pd.Series) -> None:
        n = len(values)
        x = values.to_numpy(np.float64)
        m = float(x.mean())
        dev = float(((x - m) ** 2).sum())
        if self.count:
            delta = m - self.mean
            self.squares += dev + delta * delta * self.count * n / (self.count + n)
            self.mean += delta * n / (self.count + n)
        else:
            self.squares, self.mean = dev, m

    def value(self, metric: str) -> Any:
        if metric in self.errors:
            raise ValueError(self.errors[metric])
        if metric == "column.non_null_proportion":
            return self.count / self.rows if self.rows else None
        if metric == "column.min":
            return self.low if self.count else np.nan
        if metric == "column.max":
            return self.high if self.count else np.nan
        if metric == "column.sum":
            return self.total
        if metric == "column.mean":
            return float(self.total) / self.count if self.count else np.nan
        if metric == "column.standard_deviation":
            return math.sqrt(self.squares / (self.count - 1)) if self.count > 1 else np.nan
        raise KeyError(metric)


def _common_dtype(dtypes: list) -> Any:
    """The dtype pandas gives a column read whole, from the dtypes of its chunks."""
    first = dtypes[0]
    if all(d == first for d in dtypes):
        return first
    if all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in dtypes):
        return np.result_type(*dtypes)
    return np.dtype(object)


class ChunkedValidation:
    """Feed the table's chunks in order; `report()` then gives what `validate_frame` returns."""

    def __init__(self, suite, *, partial: bool = False, what: str = "this table") -> None:
        from great_expectations.expectations.expectation import ColumnMapExpectation

        self.suite_name = suite.name
        self.maps: list[_MapCheck] = []
        self.deps: dict[int, tuple[str, ...]] = {}  # per aggregate expectation (by id): the metrics it reads
        self.skipped: list[Any] = []
        self.order: list[Any] = []
        self.wanted: dict[str, set[str]] = {}
        unsupported = []
        for e in suite.expectations:
            why = self._add(e, ColumnMapExpectation)
            if why:
                unsupported.append(f"{e.expectation_type}{self._on(e)} ({why})")
                self.skipped.append(e)
            else:
                self.order.append(e)
        if unsupported and not partial:
            raise ConfigError(
                f"{what} is validated chunk by chunk, which can't check: " + "; ".join(unsupported)
                + ". Raise data.in_memory_rows above the table's rows to validate it whole with Great "
                  "Expectations, or leave these out of the suite. Chunked: column map expectations on "
                + ", ".join(sorted(m.split(".", 1)[1] for m in ROW_LOCAL))
                + "; table row count, columns and column count; column min, max, mean, sum, stdev and "
                  "non-null proportion")
        self.rows = 0
        self.columns: list[str] | None = None
        self.dtypes: dict[str, list] = {}
        self.nulls: dict[str, int] = {}  # per column a map expectation checks, among the rows that count
        self.stats: dict[str, _ColumnStats] = {c: _ColumnStats() for c in self.wanted}

    @staticmethod
    def _on(e) -> str:
        column = e.configuration.kwargs.get("column")
        return f" on {column!r}" if column else ""

    def _add(self, e, map_base) -> str | None:
        kwargs = e.configuration.kwargs
        if kwargs.get("row_condition"):
            return "a row condition"
        if isinstance(e, map_base):
            metric = e.map_metric
            if metric not in ROW_LOCAL:
                return f"{metric} needs the whole column"
            domain, values = _value_kwargs(e, f"{metric}.condition")
            provider, fn = _condition(metric)
            length_fn = None
            if metric.startswith("column_values.value_length."):
                length_fn = _condition_map("column_values.value_length")
            self.maps.append(_MapCheck(e, domain["column"], metric, provider, fn, values,
                                       bool(getattr(provider, "filter_column_isnull", True)), length_fn))
            return None
        deps = tuple(getattr(e, "metric_dependencies", ()) or ())
        needs = set(deps) - TABLE_METRICS - COLUMN_METRICS
        if not deps or needs:
            return f"needs {', '.join(sorted(needs)) or 'metrics'} over the whole table"
        self.deps[id(e)] = deps
        column = kwargs.get("column")
        for m in deps:
            if m in COLUMN_METRICS:
                self.wanted.setdefault(column, set()).add(m)
        return None

    def feed(self, chunk: pd.DataFrame, quarantine: bool = False) -> pd.Series | None:
        """Take the next chunk. With `quarantine`, the rows failing a column map expectation are held
        back and returned as their reasons (index: their row numbers); the rest count."""
        if self.columns is None:
            self.columns = [str(c) for c in chunk.columns]
        for c, dtype in chunk.dtypes.items():
            seen = self.dtypes.setdefault(str(c), [])
            if dtype not in seen:
                seen.append(dtype)
        masks = []
        for check in self.maps:
            if check.error or check.column not in chunk.columns:
                continue
            try:
                masks.append((check, check.unexpected_mask(chunk[check.column])))
            except Exception as e:  # GX reports a metric that raises as a failed expectation: so do we
                check.error = str(e) or type(e).__name__
        reasons = None
        if quarantine and masks:
            bad = np.logical_or.reduce([m for _, m in masks])
            if bad.any():
                reasons = _reasons(chunk, masks, bad)
                for check, mask in masks:
                    check.hold_back(chunk[check.column], mask)
                chunk = chunk[~bad]
                masks = [(check, mask[~bad]) for check, mask in masks]
        for check, mask in masks:
            check.count(chunk[check.column], mask)
        for column in {c.column for c in self.maps if c.column in chunk.columns}:
            self.nulls[column] = self.nulls.get(column, 0) + int(chunk[column].isna().sum())
        self.rows += len(chunk)
        for column, wanted in self.wanted.items():
            if column in chunk.columns:
                self.stats[column].update(chunk[column], wanted)
        return reasons

    def _metrics(self, column: str | None, deps=()) -> dict[str, Any]:
        columns = self.columns or []
        metrics: dict[str, Any] = {
            "table.row_count": self.rows,
            "table.columns": columns,
            "table.column_count": len(columns),
            "table.column_types": [{"name": c, "type": _common_dtype(self.dtypes[c])} for c in columns],
        }
        for m in deps:
            if m in COLUMN_METRICS:
                metrics[m] = self.stats[column].value(m)
        return metrics

    def results(self) -> list[dict]:
        """Per evaluated expectation, in suite order: {expectation, column, success, result, exception, meta}."""
        from great_expectations.execution_engine import PandasExecutionEngine

        engine = PandasExecutionEngine()
        maps = {id(c.expectation): c for c in self.maps}
        out = []
        for e in self.order:
            column = e.configuration.kwargs.get("column")
            check = maps.get(id(e))
            reads_values = check is not None or bool(set(self.deps.get(id(e), ())) & COLUMN_METRICS)
            exception = None
            if reads_values and column not in (self.columns or []):
                exception = missing_column(column)
            elif check is not None and check.error:
                exception = check.error
            result: dict = {}
            success = False
            if exception is None:
                try:
                    metrics = self._metrics(column, self.deps.get(id(e), ()))
                except ValueError as err:
                    metrics, exception = {}, str(err)
            if exception is None:
                if check is not None:
                    prefix = check.metric
                    metrics.update({
                        "column_values.nonnull.unexpected_count": self.nulls.get(column, 0),
                        f"{prefix}.unexpected_count": check.unexpected,
                        f"{prefix}.unexpected_values": list(check.partial),
                        f"{prefix}.unexpected_index_list": None,
                        f"{prefix}.unexpected_index_query": None,
                    })
                try:
                    verdict = e._validate(metrics=metrics, runtime_configuration=RESULT_FORMAT, execution_engine=engine)
                    success, result = bool(verdict["success"]), dict(verdict.get("result") or {})
                except Exception as err:  # as GX: a raising validation is a failed expectation
                    exception = str(err) or type(err).__name__
            out.append({"expectation": e.expectation_type, "column": column, "success": success,
                        "result": result, "exception": exception, "meta": e.meta})
        return out

    def report(self) -> dict[str, Any]:
        """The shape `validate_frame` returns: suite, success, statistics, failed."""
        results = self.results()
        failed = [failure_entry(r["expectation"], r["column"], r["result"], r["exception"], r["meta"])
                  for r in results if not r["success"]]
        return {"suite": self.suite_name, "success": not failed, "statistics": statistics(results),
                "failed": failed}

    def quarantined(self) -> list[dict]:
        """Per column map expectation that held rows back: how many, and the first values."""
        return jsonable([{"expectation": c.expectation.expectation_type, "column": c.column, "rows": c.quarantined,
                          "partial_unexpected_list": c.quarantined_values}
                         for c in self.maps if c.quarantined])


def _condition_map(metric: str):
    from great_expectations.expectations.registry import _registered_metrics

    _, fn = _registered_metrics[f"{metric}.map"]["providers"]["PandasExecutionEngine"]
    return inspect.unwrap(fn)


def _reasons(chunk: pd.DataFrame, masks: list, bad: np.ndarray) -> pd.Series:
    """One text per held-back row: each failed expectation, its column and the row's value there."""
    out = pd.Series("", index=chunk.index[bad], dtype=object)
    for check, mask in masks:
        if not mask.any():
            continue
        values = chunk[check.column][mask]
        text = f"{check.label} (value " + values.map(repr).astype(str) + ")"
        rows = values.index
        out.loc[rows] = np.where(out.loc[rows] == "", text, out.loc[rows] + "; " + text)
    return out
