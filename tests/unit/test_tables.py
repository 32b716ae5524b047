"""Table data: the example exports, chunked reading, the table preprocessor, and configs that follow the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maas import io
from maas.config import compose
from maas.data.preprocessor import load_preprocessor
from maas.data.sources import export, iter_raw, read_raw
from maas.data.table_preprocessor import TablePreprocessor, encoded_width
from maas.errors import ArtifactError, ConfigError, DataValidationError

FEATURES = {
    "size": {"type": "numeric", "missing": "mean"},
    "weight": {"type": "numeric"},  # missing: fail
    "colour": {"type": "categorical", "categories": ["red", "green", "blue"], "missing": "most_frequent"},
    "grade": {"type": "categorical", "categories": [1, 2], "missing": "constant", "fill": 2},
}


def frame(**columns) -> pd.DataFrame:
    base = {"size": [1.0, 2.0, 3.0, np.nan], "weight": [10.0, 20.0, 30.0, 40.0],
            "colour": ["red", "blue", "blue", None], "grade": [1, 2, None, 1]}
    return pd.DataFrame({**base, **columns})


@pytest.mark.parametrize("data, fmt, rows, columns", [("wine", "csv", 178, 14), ("breast_cancer", "parquet", 569, 31)])
def test_examples_export_deterministically_and_read_in_chunks(tmp_path, data, fmt, rows, columns):
    cfg = compose([f"data={data}", f"paths.raw={tmp_path}"])
    path = export(cfg)
    assert path.suffix == f".{fmt}" and path.read_bytes() == export(cfg).read_bytes()
    whole = read_raw(cfg)
    assert whole.shape == (rows, columns) and list(whole.columns[:-1]) == list(cfg.data.features)
    chunks = list(iter_raw(cfg, chunk_rows=50))
    assert [len(c) for c in chunks] == [50] * (rows // 50) + [rows % 50]
    assert chunks[1].index[0] == 50  # row numbers continue across chunks
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)


def test_a_table_config_chooses_an_mlp_sized_to_its_columns():
    cfg = compose(["data=wine"])
    assert cfg.model.arch == "mlp" and cfg.model.in_features == 13 and cfg.model.num_classes == 3
    assert cfg.serve.model_name == "maas-wine" and cfg.gates.min_test_accuracy < 0.97
    assert compose(["data=wine", "model.hidden=[8]"]).model.hidden == [8]  # the command line still wins
    with pytest.raises(ConfigError, match="model.arch='cnn' takes images, but data.kind=table"):
        compose(["data=wine", "model=cnn"])
    with pytest.raises(ConfigError, match="data.features.alcohol.type='text'"):
        compose(["data=wine", "data.features.alcohol.type=text"])


def test_one_hot_categories_widen_the_input():
    assert encoded_width(FEATURES) == 2 + 3 + 2
    with pytest.raises(ConfigError, match="list its values in data.features.c.categories"):
        encoded_width({"c": {"type": "categorical"}})
    with pytest.raises(ConfigError, match="data.features.c.missing=constant needs data.features.c.fill"):
        encoded_width({"c": {"missing": "constant"}})
    with pytest.raises(ConfigError, match="missing='median' is not allowed for a numeric column"):
        encoded_width({"c": {"missing": "median"}})


def test_the_preprocessor_fills_encodes_and_scales_from_train_only(tmp_path):
    pre = TablePreprocessor.fit(frame(weight=[10.0, 20.0, 30.0, 40.0]), FEATURES, "standard", 2)
    size, weight, colour, grade = pre.columns
    assert size["fill"] == pytest.approx(2.0) and size["offset"] == pytest.approx(2.0)  # mean of the known values
    assert weight["scale"] == pytest.approx(np.std([10, 20, 30, 40]))
    assert colour["fill"] == "blue"  # the most frequent
    x = pre.transform(frame())
    assert x.shape == (4, 1, 1, 7) and x.dtype == np.float32
    rows = x.reshape(4, 7)
    assert rows[3, 0] == 0.0  # the filled mean, centred
    np.testing.assert_array_equal(rows[:, 2:5], [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])  # red, blue, blue, (blue)
    np.testing.assert_array_equal(rows[:, 5:7], [[1, 0], [0, 1], [0, 1], [1, 0]])  # grade 1, 2, (fill 2), 1
    # Saved as JSON and loaded back (by either kind's loader), it gives the same inputs.
    path = pre.save(tmp_path / "preprocessor.json")
    np.testing.assert_array_equal(load_preprocessor(path).transform(frame()), x)
    # Fitted chunk by chunk, the same numbers.
    chunked = TablePreprocessor.fit(iter([frame().iloc[:1], frame().iloc[1:3], frame().iloc[3:]]), FEATURES,
                                    "standard", 2)
    for a, b in zip(chunked.columns, pre.columns):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in ("offset", "scale"))


def test_bad_rows_are_named():
    pre = TablePreprocessor.fit(frame(), FEATURES, "minmax", 2)
    with pytest.raises(DataValidationError, match="column 'weight' is missing a value at row 1 .*missing=fail"):
        pre.transform(frame(weight=[1.0, None, 3.0, 4.0]))
    with pytest.raises(DataValidationError, match="column 'colour' has 'purple' at row 2, not one of its categories"):
        pre.transform(frame(colour=["red", "red", "purple", "red"]))
    with pytest.raises(DataValidationError, match="column 'size' is numeric but holds 'big'"):
        pre.transform(frame(size=[1.0, 2.0, "big", 3.0]))
    with pytest.raises(DataValidationError, match="the rows have no column 'grade'"):
        pre.transform(frame().drop(columns="grade"))


def test_a_damaged_preprocessor_file_is_refused(tmp_path):
    path = TablePreprocessor.fit(frame(), FEATURES, "none", 2).save(tmp_path / "preprocessor.json")
    blob = io.read_json(path)
    blob["columns"][0]["type"] = "exotic"
    io.write_json(path, blob)
    with pytest.raises(ArtifactError, match="not a valid table preprocessor"):
        load_preprocessor(path)


def test_a_parquet_table_is_numbered_by_row_whatever_index_it_stored(tmp_path):
    """Quarantine and the split name rows by their number in the table: a stored pandas index
    (here: labels) must not renumber them when the table is read whole."""
    cfg = compose(["data=breast_cancer", f"paths.raw={tmp_path}"])
    export(cfg)
    table = read_raw(cfg)
    table.index = [f"patient-{i}" for i in range(len(table))]
    table.to_parquet(cfg.data.path)  # pandas stores the index as a column
    whole = read_raw(cfg)
    assert list(whole.index[:3]) == [0, 1, 2] and list(whole.columns) == list(table.columns)
    pd.testing.assert_frame_equal(pd.concat(iter_raw(cfg, chunk_rows=100)), whole)


def test_missing_raw_data_is_named_before_it_is_hashed(tmp_path):
    from maas.data.sources import raw_md5

    with pytest.raises(ArtifactError, match="raw data not found at .*wine.csv: make it with `maas data export`"):
        raw_md5(compose(["data=wine", f"paths.raw={tmp_path}"]))
