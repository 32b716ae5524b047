"""What /predict of a table model accepts ({"rows": [{column: value}, ...]}), and the 400 for what it doesn't."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from maas.data.table_preprocessor import TablePreprocessor
from maas.serving.schemas import BadRequest, parse_body
from maas.serving.table_requests import TableSpec, request_columns, rows_schema

FEATURES = {
    "alcohol": {"type": "numeric", "missing": "mean"},
    "proline": {"type": "numeric", "missing": "fail"},
    "colour": {"type": "categorical", "missing": "most_frequent", "categories": ["red", "white"]},
    "grade": {"type": "categorical", "missing": "fail", "categories": [1, 2, 3]},
}
TRAIN = pd.DataFrame({"alcohol": [12.0, 13.5, None, 14.1], "proline": [500, 700, 1000, 1200],
                      "colour": ["red", "white", "red", None], "grade": [1, 2, 3, 2]})
ROW = {"alcohol": 13.2, "proline": 800, "colour": "white", "grade": 3}


@pytest.fixture(scope="module")
def spec() -> TableSpec:
    return TableSpec(TablePreprocessor.fit(TRAIN, FEATURES, "standard", 2), max_request_rows=3)


def rows(**changes) -> list[dict]:
    """One good row with `changes` (a value of None sends null; DROP leaves the column out)."""
    row = {**ROW, **changes}
    return [{k: v for k, v in row.items() if v is not DROP}]


DROP = object()


def test_rows_reach_the_model_as_the_preprocessor_makes_them_from_the_raw_table(spec):
    sent = [ROW, {"alcohol": None, "proline": 1e3, "colour": None, "grade": 1}]
    raw = pd.DataFrame({"alcohol": [13.2, None], "proline": [800, 1000], "colour": ["white", None], "grade": [3, 1]})
    got = spec.inputs(parse_body(json.dumps({"rows": sent}).encode(), spec).rows)
    assert got.dtype == np.float32 and np.array_equal(got, spec.preprocessor.transform(raw))
    # the nulls became the fitted fills: the training mean, the most frequent category
    assert got[1, 0, 0, 0] == np.float32((np.mean([12.0, 13.5, 14.1]) - spec.preprocessor.columns[0]["offset"])
                                         / spec.preprocessor.columns[0]["scale"])
    assert got[1, 0, 0, 2:4].tolist() == [1.0, 0.0]  # "red"


def test_a_batch_of_requests_gives_each_row_what_it_gets_alone(spec):
    one, two = spec.check(rows()), spec.check(rows(alcohol=None, colour="red", grade=1) * 2)
    assert np.array_equal(spec.inputs(np.concatenate([one, two])), np.concatenate([spec.inputs(one),
                                                                                   spec.inputs(two)]))


@pytest.mark.parametrize("body, message, reason", [
    (b'{"rows": [', r"^the body is not valid JSON .*; send \{\"rows\": \[\.\.\.\]\}$", "not_json"),
    (b"[1]", r'^the body must be a JSON object with the field "rows"', "bad_field"),
    (b'{"images": [[1]]}', r'^the body must be a JSON object with the field "rows"', "bad_field"),
    (json.dumps({"rows": [ROW], "limit": 1}).encode(), r'^unknown field\(s\) "limit"; the body is \{"rows"',
     "bad_field"),
    (json.dumps({"rows": [ROW], "return_probabilities": "no"}).encode(), r'^return_probabilities is "no"',
     "bad_field"),
    (b'{"rows": []}', r"^rows must be a non-empty list of rows", "bad_field"),
    (b'{"rows": {"alcohol": 1}}', r"^rows must be a non-empty list of rows", "bad_field"),
    (json.dumps({"rows": [ROW] * 4}).encode(), r"^rows holds 4 rows; at most 3 per request$", "too_many_images"),
    (json.dumps({"rows": [ROW, [13.2, 800]]}).encode(), r"^rows\[1\] is \[13.2, 800\]; each row must be an object",
     "bad_field"),
])
def test_bad_bodies_are_named(spec, body, message, reason):
    with pytest.raises(BadRequest, match=message) as e:
        parse_body(body, spec)
    assert e.value.reason == reason


@pytest.mark.parametrize("sent, message, reason", [
    (rows(alcohol=DROP), r'^rows\[0\] has no column "alcohol"$', "shape"),
    (rows(alcohol=DROP, grade=DROP), r'^rows\[0\] has no columns "alcohol", "grade"$', "shape"),
    (rows(vintage=2001), r'^rows\[0\] has an unknown column "vintage"; each row has exactly the columns "alcohol", '
                         r'"proline", "colour", "grade"$', "shape"),
    (rows(alcohol=DROP, alcohol_pct=13), r'^rows\[0\] has no column "alcohol" and an unknown column "alcohol_pct" '
                                         r'\(did you mean "alcohol"\?\)$', "shape"),
    (rows(alcohol="13.2"), r'^rows\[0\]\["alcohol"\] is "13.2"; "alcohol" takes a finite number, or null for a '
                           r'missing value$', "pixel"),
    (rows(proline=True), r'^rows\[0\]\["proline"\] is true; "proline" takes a finite number$', "pixel"),
    (rows(proline=[800]), r'^rows\[0\]\["proline"\] is \[800\]; "proline" takes a finite number$', "pixel"),
    (rows(proline=float("nan")), r'^rows\[0\]\["proline"\] is NaN; "proline" takes a finite number$', "pixel"),
    (rows(proline=float("inf")), r'^rows\[0\]\["proline"\] is Infinity; "proline" takes a finite number$', "pixel"),
    (rows(proline=10**400), r'^rows\[0\]\["proline"\] is an integer of 1329 bits; "proline" takes numbers in '
                            r'\[-?[0-9.e+]+, [0-9.e+]+\] \(1e\+09 training scales around its centre\)$', "pixel"),
    (rows(proline=None), r'^rows\[0\]\["proline"\] is null, but "proline" needs a value \(its missing values are '
                         r'not filled\): send a finite number$', "pixel"),
    (rows(colour="rose"), r'^rows\[0\]\["colour"\] is "rose"; "colour" takes one of "red", "white", or null for a '
                          r'missing value$', "pixel"),
    (rows(grade="3"), r'^rows\[0\]\["grade"\] is "3"; "grade" takes one of 1, 2, 3$', "pixel"),
    (rows(grade=3.0), r'^rows\[0\]\["grade"\] is 3.0; "grade" takes one of 1, 2, 3$', "pixel"),
    (rows(grade=None), r'^rows\[0\]\["grade"\] is null, but "grade" needs a value \(its missing values are not '
                       r'filled\): send one of 1, 2, 3$', "pixel"),
])
def test_each_bad_row_is_named_by_row_and_column(spec, sent, message, reason):
    with pytest.raises(BadRequest, match=message) as e:
        spec.check(sent)
    assert e.value.reason == reason
    with pytest.raises(BadRequest, match=message.replace(r"rows\[0\]", r"rows\[2\]")):  # the index is the row's
        spec.check([ROW, ROW, *sent])


def test_the_document_describes_exactly_what_the_checks_accept(spec):
    schema = rows_schema(request_columns(spec.preprocessor))
    row = schema["items"]
    assert schema["type"] == "array" and schema["minItems"] == 1
    assert row["required"] == ["alcohol", "proline", "colour", "grade"] and row["additionalProperties"] is False
    props = row["properties"]
    assert {k: props["alcohol"][k] for k in ("type", "nullable")} == {"type": "number", "nullable": True}
    assert props["proline"]["type"] == "number" and "nullable" not in props["proline"]
    assert props["colour"]["enum"] == ["red", "white", None] and props["colour"]["nullable"] is True
    assert props["colour"]["type"] == "string"
    assert props["grade"]["enum"] == [1, 2, 3] and props["grade"]["type"] == "integer" and "nullable" not in props[
        "grade"]


def test_the_docs_example_is_accepted_and_gains_the_served_limits(spec):
    from maas.serving.openapi import document

    body = {"schema": {"properties": {"rows": rows_schema(request_columns(spec.preprocessor))}}}
    doc = {"paths": {"/predict": {"post": {"requestBody": {"content": {"application/json": body}}}}}}
    document(doc, spec)
    assert spec.check(body["example"]["rows"]).shape == (1, 4)
    served = body["schema"]["properties"]["rows"]
    assert served["maxItems"] == 3
    low, high = spec.bounds()["proline"]
    assert (served["items"]["properties"]["proline"]["minimum"], served["items"]["properties"]["proline"][
        "maximum"]) == (low, high)
    spec.check(rows(proline=high))  # the bounds are the checks' own
    with pytest.raises(BadRequest):
        spec.check(rows(proline=high * (1 + 1e-15)))


def test_metadata_and_the_model_card_describe_the_columns(spec, tmp_path):
    from maas.model_card import _input
    from maas.serving.metadata import _input as served_input

    described = served_input(spec).model_dump()
    assert described["max_request_rows"] == 3
    by_name = {c["name"]: c for c in described["columns"]}
    assert by_name["colour"] == {"name": "colour", "type": "categorical", "nullable": True,
                                 "missing": "most_frequent", "fill": "red", "categories": ["red", "white"],
                                 "min": None, "max": None}
    assert by_name["proline"]["nullable"] is False and by_name["proline"]["fill"] is None
    assert by_name["alcohol"]["fill"] == pytest.approx(np.mean([12.0, 13.5, 14.1]))
    line = _input({"columns": request_columns(spec.preprocessor), "input_shape": [1, 1, 7]})
    assert line.startswith("table rows") and "`grade` (one of 1, 2, 3) (never null)" in line


def test_a_table_bento_pins_pandas_and_an_image_bento_does_not():
    from maas.stages.package import service_requirements

    assert "pandas==" in service_requirements("torch", "table")
    assert "pandas" not in service_requirements("torch", "image")


def test_an_image_bento_loads_its_preprocessor_without_pandas(tmp_path):
    """load_preprocessor names the table format itself: importing table_preprocessor would import pandas,
    which an image model's Bento doesn't pin (tests/e2e/test_container.py)."""
    import subprocess
    import sys

    from maas.data import preprocessor, table_preprocessor

    assert preprocessor.TABLE_FORMAT == table_preprocessor.FORMAT
    path = preprocessor.Preprocessor.fit(np.zeros((2, 4)), "none", (1, 2, 2)).save(tmp_path / "p.json")
    probe = ("import sys; from maas.data.preprocessor import load_preprocessor; "
             f"load_preprocessor({str(path)!r}); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
