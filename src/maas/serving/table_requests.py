"""The /predict request of a table model, `{"rows": [{column: value, ...}, ...]}`, and its checks.

The model's preprocessor (data.features as fitted on the training split) is the schema:
every row has every feature column and no other; a numeric column takes a finite JSON
number, a categorical one one of its declared categories; null only where the column's
missing policy is not `fail`, and then the preprocessor's fill applies. The checks run per
request, before anything is batched, and name the row and the column.

A checked request's rows are kept as plain numbers (a category as its index); each batch
of them goes through the same TablePreprocessor.transform the preprocess stage ran, so a
row sent as JSON reaches the model as the pipeline's own row did, bit for bit. That runs
with the model, off the event loop, once per batch: pandas costs milliseconds per call.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field as dataclass_field
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from maas.serving.schemas import BadRequest, show

# A numeric value may lie this many of its column's training scales (standard deviations, or
# ranges under minmax) from the column's centre. Far beyond it the model's float32 arithmetic
# overflows (an autoencoder's squared error first, near 1e19 scales) and the answer would hold NaN
# or infinity, which JSON can't carry. No real row comes near either.
SCALES_FROM_CENTRE = 1e9

ROWS = Field(
    description="A batch of table rows, each an object with every feature column of the training data "
    "(data.features) and no other: {column: value}. Numeric columns take JSON numbers, categorical ones "
    "one of their categories; null only where the column's missing policy fills it. GET /metadata lists "
    "the columns.",
)


def request_columns(preprocessor) -> list[dict[str, Any]]:
    """What a request must send, per column in order: name, type, missing policy, categories, and whether
    null is accepted. The package stage records this in the Bento (build argument `table_columns`)."""
    return [{"name": c["name"], "type": c["type"], "missing": c["missing"], "categories": list(c["categories"]),
             "nullable": _fills(c)} for c in preprocessor.columns]


def _fills(c: dict[str, Any]) -> bool:
    """Whether null in this column becomes a value the preprocessor takes: its policy fills, and the
    fill is a number (numeric) or one of the categories as the preprocessor matches them (by text)."""
    if c["missing"] == "fail":
        return False
    if c["type"] == "numeric":
        return type(c["fill"]) in (int, float) and math.isfinite(c["fill"])
    return str(c["fill"]) in {str(v) for v in c["categories"]}


def _category_key(value) -> tuple:
    # 1, 1.0 and true are equal in Python but different JSON values, and the preprocessor matches
    # categories by their text ("1" vs "1.0"): so a value matches a category of its own JSON type only.
    return type(value), value


def _json_type(values: list) -> str | None:
    for name, types in (("string", (str,)), ("boolean", (bool,)), ("integer", (int,)), ("number", (int, float))):
        if all(type(v) in types for v in values):
            return name
    return None


def rows_schema(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema (OpenAPI 3.0) of `rows` for these request columns: one object per row, every
    column required, no others; numbers or the categories; nullable where the missing policy fills."""
    properties = {}
    for c in columns:
        nullable = c["nullable"]
        if c["type"] == "numeric":
            prop = {"type": "number"}
        else:
            prop = {"enum": [*c["categories"], *([None] if nullable else [])]}
            if kind := _json_type(c["categories"]):
                prop = {"type": kind, **prop}
        if nullable:
            prop["nullable"] = True
        prop["description"] = f"{c['type']}; " + (f"null is filled (missing policy: {c['missing']})" if nullable
                                                  else "null is refused")
        properties[c["name"]] = prop
    row = {"type": "object", "properties": properties, "required": [c["name"] for c in columns],
           "additionalProperties": False}
    return {"type": "array", "minItems": 1, "items": row}


@dataclass(frozen=True)
class DocumentedRows:
    """Annotation that makes the OpenAPI document describe `rows` exactly (see rows_schema)."""

    columns: tuple[dict[str, Any], ...]

    def __hash__(self) -> int:  # pydantic hashes annotations; the columns hold lists
        return hash(json.dumps(self.columns, sort_keys=True))

    def __get_pydantic_json_schema__(self, schema, handler):
        value = handler(schema)
        value.update(rows_schema(list(self.columns)))
        return value


@dataclass(frozen=True)
class _Column:
    """One column as a request sees it, with what the checks need precomputed."""

    name: str
    numeric: bool
    nullable: bool
    low: float = -math.inf
    high: float = math.inf
    lookup: dict = dataclass_field(default_factory=dict)  # categorical: _category_key(value) -> its index
    wants: str = ""                             # what the column takes, for the error message

    def refuse(self, i: int, value) -> BadRequest:
        where, name = f"rows[{i}][{json.dumps(self.name)}]", json.dumps(self.name)
        if value is None:
            return BadRequest(f"{where} is null, but {name} needs a value (its missing values are not filled): "
                              f"send {self.wants}", "pixel")
        if self.numeric and type(value) in (int, float) and value == value and abs(value) != math.inf:
            return BadRequest(f"{where} is {show(value)}; {name} takes numbers in [{self.low:.6g}, {self.high:.6g}] "
                              f"({SCALES_FROM_CENTRE:g} training scales around its centre)", "pixel")
        return BadRequest(f"{where} is {show(value)}; {name} takes {self.wants}", "pixel")


def _column(c: dict[str, Any]) -> _Column:
    nullable = _fills(c)
    null = ", or null for a missing value" if nullable else ""
    if c["type"] == "numeric":
        reach = SCALES_FROM_CENTRE * float(c["scale"])
        low, high = float(c["offset"]) - reach, float(c["offset"]) + reach
        return _Column(c["name"], True, nullable, low, high,
                       wants=f"a finite number{null}")
    categories = ", ".join(json.dumps(v) for v in c["categories"])
    return _Column(c["name"], False, nullable, lookup={_category_key(v): i for i, v in enumerate(c["categories"])},
                   wants=f"one of {categories}{null}")


@dataclass(frozen=True)
class TableSpec:
    """What one request may send: the preprocessor's columns, at most `max_request_rows` rows."""

    preprocessor: Any            # the TablePreprocessor the rows go through
    max_request_rows: int        # serve.max_request_images: the limit per request applies to rows too
    _checks: tuple[_Column, ...] = dataclass_field(init=False, repr=False)
    field: ClassVar[str] = "rows"
    unit: ClassVar[str] = "rows"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", tuple(_column(c) for c in self.preprocessor.columns))

    @property
    def columns(self) -> list[dict[str, Any]]:
        return request_columns(self.preprocessor)

    def bounds(self) -> dict[str, tuple[float, float]]:
        """Per numeric column, the values accepted (see SCALES_FROM_CENTRE)."""
        return {c.name: (c.low, c.high) for c in self._checks if c.numeric}

    def check(self, rows) -> np.ndarray:
        """Check a request's rows and return them encoded, one float64 row each, a value per column in
        order: a numeric value as it is, a category as its index among the column's categories, null as
        NaN. Cheap, on the event loop; `inputs` turns a batch of these into model inputs."""
        checks = self._checks
        if not isinstance(rows, list) or not rows:
            raise BadRequest('rows must be a non-empty list of rows, each an object {"column": value, ...}',
                             "bad_field")
        if len(rows) > self.max_request_rows:
            raise BadRequest(f"rows holds {len(rows)} rows; at most {self.max_request_rows} per request",
                             "too_many_images")
        names = frozenset(c.name for c in checks)
        out = np.empty((len(rows), len(checks)), np.float64)
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(f'rows[{i}] is {show(row)}; each row must be an object {{"column": value, ...}}',
                                 "bad_field")
            if row.keys() != names:
                raise self._wrong_columns(i, row)
            for j, c in enumerate(checks):
                value = row[c.name]
                if value is None:
                    if not c.nullable:
                        raise c.refuse(i, value)
                    out[i, j] = math.nan
                elif c.numeric:
                    # bool is an int to Python; NaN and infinities fail the comparison; a huge int can't be a float.
                    if type(value) not in (int, float) or not (c.low <= value <= c.high):
                        raise c.refuse(i, value)
                    out[i, j] = value
                else:
                    index = c.lookup.get(_category_key(value)) if isinstance(value, (str, int, float)) else None
                    if index is None:
                        raise c.refuse(i, value)
                    out[i, j] = index
        return out

    def inputs(self, encoded: np.ndarray) -> np.ndarray:
        """Checked rows (`check`'s, of one request or a batch of them) -> the model's inputs, by the
        preprocessor's own transform."""
        return self.preprocessor.transform(self.frame(encoded))

    def frame(self, encoded: np.ndarray):
        """Checked rows as the DataFrame the preprocessor takes: numeric columns float64 with NaN for null,
        categorical ones holding the declared categories (None for null), as the raw table would."""
        import pandas as pd

        data = {}
        for j, (c, spec) in enumerate(zip(self._checks, self.preprocessor.columns)):
            if c.numeric:
                data[c.name] = encoded[:, j]
            else:
                categories = np.array([*spec["categories"], None], dtype=object)
                codes = encoded[:, j]
                data[c.name] = pd.Series(categories[np.where(np.isnan(codes), -1, codes).astype(np.int64)],
                                         dtype=object)
        return pd.DataFrame(data)

    def _wrong_columns(self, i: int, row: dict) -> BadRequest:
        order = [c.name for c in self._checks]
        missing = [n for n in order if n not in row]
        unknown = sorted(row.keys() - set(order))
        parts = []
        if missing:
            parts.append(f"no column{'s' if len(missing) > 1 else ''} {_names(missing)}")
        if unknown:
            hints = {u: difflib.get_close_matches(u, missing or order, n=1) for u in unknown}
            said = ", ".join(json.dumps(u) + (f" (did you mean {json.dumps(h[0])}?)" if h else "")
                             for u, h in list(hints.items())[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            parts.append(f"{'an unknown column' if len(unknown) == 1 else 'unknown columns'} {said}{more}")
        message = f"rows[{i}] has " + " and ".join(parts)
        if unknown and not any(hints.values()):
            message += f"; each row has exactly the columns {_names(order)}"
        return BadRequest(message, "shape")

    def example(self) -> list[dict[str, Any]]:
        """A one-row batch this spec accepts (the /docs.json example): each numeric column near its
        training centre, each categorical one at its first category."""
        row = {}
        for c in self.preprocessor.columns:
            if c["type"] == "numeric":
                centre = c["fill"] if c["missing"] == "mean" else c["offset"] + (
                    c["scale"] / 2 if self.preprocessor.kind == "minmax" else 0.0)
                row[c["name"]] = float(f"{float(centre):.4g}")
            else:
                row[c["name"]] = c["categories"][0]
        return [row]


def _names(names: list[str], most: int = 20) -> str:
    shown = ", ".join(json.dumps(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
