"""The chunked validation engine against Great Expectations, quarantine, and the streamed preprocess."""

from __future__ import annotations

import io as bytes_io
import math

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_overrides
from maas import io
from maas.config import compose
from maas.data.sources import export
from maas.data.split_files import read_split, write_split
from maas.data.splits import TEST, TRAIN, VAL, hashed_split
from maas.errors import ArtifactError, ConfigError, DataValidationError
from maas.registry import get


def _suite(name: str = "parity"):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    gx.get_context(mode="ephemeral")
    suite = gx.ExpectationSuite(name=name)
    for e in [
        gxe.ExpectTableColumnsToMatchSet(column_set=["a", "b", "c", "gone", "label"], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=10, max_value=1000),
        gxe.ExpectTableColumnCountToEqual(value=5),
        gxe.ExpectColumnValuesToNotBeNull(column="a"),
        gxe.ExpectColumnValuesToNotBeNull(column="b", mostly=0.8),
        gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=10),
        gxe.ExpectColumnValuesToBeBetween(column="c", min_value=0, max_value=30, strict_max=True, mostly=0.9),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1, 2]),
        gxe.ExpectColumnValuesToBeInSet(column="b", value_set=["red", "green"]),
        gxe.ExpectColumnValuesToMatchRegex(column="b", regex="^(red|green|blue)$"),
        gxe.ExpectColumnValuesToBeOfType(column="b", type_="str"),
        gxe.ExpectColumnValuesToBeOfType(column="c", type_="int64"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="b", min_value=3, max_value=5),
        gxe.ExpectColumnMinToBeBetween(column="a", min_value=0),
        gxe.ExpectColumnMaxToBeBetween(column="c", max_value=100),
        gxe.ExpectColumnMeanToBeBetween(column="a", min_value=4, max_value=6),
        gxe.ExpectColumnStdevToBeBetween(column="c", min_value=0, max_value=1),
        gxe.ExpectColumnSumToBeBetween(column="c", min_value=0),
        gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column="b", min_value=0.95),
        gxe.ExpectColumnValuesToNotBeNull(column="gone"),  # a missing column: an error, in both engines
        gxe.ExpectColumnMeanToBeBetween(column="gone", min_value=0),
    ]:
        suite.add_expectation(e)
    return suite


def _bad_frame() -> pd.DataFrame:
    """40 rows with nulls, out-of-range values, bad labels and stray text; no column `gone`."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.uniform(0, 10, 40).round(2), "b": rng.choice(["red", "green", "blue"], 40),
                          "c": np.arange(40), "label": rng.integers(0, 3, 40)})
    frame.loc[[3, 17, 30], "a"] = [np.nan, 12.5, -1.0]
    frame.loc[[5, 6], "b"] = [None, "purple!"]
    frame.loc[[8, 21], "label"] = [7, 3]
    return frame


def _comparable(report: dict) -> dict:
    """The verdicts and failures, observed values to 9 digits (a mean summed per chunk may differ in the last)."""
    failed = {}
    for f in report["failed"]:
        d = dict(f["details"])
        if isinstance(d.get("observed_value"), float):
            d["observed_value"] = round(d["observed_value"], 9)
        failed[(f["expectation"], f["column"])] = d
    assert len(failed) == len(report["failed"])
    return {"success": report["success"], "statistics": report["statistics"], "failed": failed}


def test_chunked_engine_agrees_with_great_expectations_and_chunk_boundaries_do_not_matter():
    from maas.validation.chunked import ChunkedValidation
    from maas.validation.suite import validate_frame

    frame = _bad_frame()
    reference = validate_frame(frame, None, None, suite=_suite())
    assert not reference["success"] and len(reference["failed"]) >= 12
    by_type = {(f["expectation"], f["column"]): f["details"] for f in reference["failed"]}
    assert by_type[("expect_column_values_to_be_in_set", "label")]["unexpected_count"] == 2
    assert "does not exist" in by_type[("expect_column_values_to_not_be_null", "gone")]["exception"]
    for chunk_rows in (7, 40):
        checks = ChunkedValidation(_suite())
        for start in range(0, len(frame), chunk_rows):
            checks.feed(frame.iloc[start:start + chunk_rows])
        chunked = checks.report()
        assert _comparable(chunked) == _comparable(reference), chunk_rows


def test_a_big_table_names_the_expectations_it_cannot_check_in_chunks():
    import great_expectations.expectations as gxe

    from maas.validation.chunked import ChunkedValidation

    suite = _suite()
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="c"))
    suite.add_expectation(gxe.ExpectColumnMedianToBeBetween(column="a", min_value=0, max_value=10))
    with pytest.raises(ConfigError, match="expect_column_values_to_be_unique on 'c'.*"
                                          "expect_column_median_to_be_between on 'a'.*data.in_memory_rows"):
        ChunkedValidation(suite)
    assert len(ChunkedValidation(suite, partial=True).skipped) == 2


# --- quarantine, through the stages ------------------------------------------

BAD_ROWS = {3: "expect_column_values_to_be_in_set on label", 10: "expect_column_values_to_not_be_null on alcohol",
            20: "expect_column_values_to_be_in_set on label; expect_column_values_to_not_be_null on alcohol"}


@pytest.fixture(scope="module")
def bad_wine(tmp_path_factory):
    """Wine with three bad rows, declared so that alcohol must not be missing."""
    raw = tmp_path_factory.mktemp("wine-raw")
    path = export(compose(["data=wine", f"paths.raw={raw}"]))
    frame = pd.read_csv(path)
    frame["alcohol"] = frame["alcohol"].astype(float)
    frame.loc[[3, 20], "label"] = 7
    frame.loc[[10, 20], "alcohol"] = np.nan
    frame.to_csv(path, index=False)
    return raw


def _wine(tmp, raw, *extra):
    return compose(tiny_overrides(tmp, raw) + ["data=wine", "model=mlp", "data.features.alcohol.missing=fail",
                                               *extra])


def _reasons(cfg) -> dict[int, str]:
    import re

    q = pd.read_csv(f"{cfg.paths.validated}/quarantine.csv")
    return {int(r.row): re.sub(r" \(value [^)]*\)", "", r.reasons) for r in q.itertuples()}


@pytest.mark.parametrize("engine_overrides, engine", [
    ((), "great_expectations"),
    (("data.in_memory_rows=50", "data.chunk_rows=7"), "chunked"),
])
def test_quarantine_holds_bad_rows_back_and_the_run_goes_on(bad_wine, tmp_path, capsys, engine_overrides, engine):
    cfg = _wine(tmp_path, bad_wine, "data.on_bad_rows=quarantine", *engine_overrides)
    summary = get("validate").run(cfg)
    assert summary["engine"] == engine and (summary["rows"], summary["quarantined"], summary["passed_rows"]) == (
        178, 3, 175)
    assert "validate: 178 rows, 3 quarantined (" in capsys.readouterr().out
    result = io.read_json(f"{cfg.paths.validated}/result.json")
    assert result["success"] and result["quarantine"]["rows"] == 3
    assert {(b["expectation"], b["column"]): b["rows"] for b in result["quarantine"]["by_expectation"]} == {
        ("expect_column_values_to_be_in_set", "label"): 2, ("expect_column_values_to_not_be_null", "alcohol"): 2}
    assert _reasons(cfg) == BAD_ROWS
    # The rows' own values travel with them; the value that failed is in the reason.
    q = pd.read_csv(f"{cfg.paths.validated}/quarantine.csv")
    assert q.loc[q.row == 3, "label"].item() == 7 and "(value 7" in q.loc[q.row == 3, "reasons"].item()

    sizes = get("preprocess").run(cfg)["sizes"]
    index = np.concatenate([read_split(cfg.paths.processed, n)["index"] for n in ("train", "val", "test")])
    assert sum(sizes.values()) == 175 and sorted(index.tolist()) == sorted(set(range(178)) - set(BAD_ROWS))


def test_chunked_fail_mode_names_the_failures_and_keeps_the_last_good_result(bad_wine, tmp_path):
    cfg = _wine(tmp_path, bad_wine, "data.in_memory_rows=50", "data.chunk_rows=7")
    with pytest.raises(DataValidationError, match=r"expect_column_values_to_be_in_set on column 'label': "
                                                  r"\{'unexpected_count': 2"):
        get("validate").run(cfg)
    assert not (tmp_path / "validated").exists()


def test_preprocess_refuses_a_quarantine_file_changed_since_validation(bad_wine, tmp_path):
    cfg = _wine(tmp_path, bad_wine, "data.on_bad_rows=quarantine", "data.in_memory_rows=50", "data.chunk_rows=50")
    get("validate").run(cfg)
    q = tmp_path / "validated" / "quarantine.csv"
    q.write_text("\n".join(q.read_text().splitlines()[:-1]) + "\n")  # one held-back row less
    with pytest.raises(ArtifactError, match="quarantine.csv is missing or changed since validation"):
        get("preprocess").run(cfg)


def test_parquet_quarantine_keeps_the_source_schema(tmp_path):
    raw = tmp_path / "raw"
    path = export(compose(["data=breast_cancer", f"paths.raw={raw}"]))
    frame = pd.read_parquet(path)
    frame.loc[[0, 100], "label"] = 5
    frame.to_parquet(path, index=False)
    cfg = compose(tiny_overrides(tmp_path, raw) + ["data=breast_cancer", "model=mlp", "data.on_bad_rows=quarantine",
                                                   "data.in_memory_rows=0", "data.chunk_rows=64",
                                                   "expectations.expect=[]"])  # its pair check needs the whole table
    assert get("validate").run(cfg)["quarantined"] == 2
    q = pd.read_parquet(tmp_path / "validated" / "quarantine.parquet")
    assert q["row"].tolist() == [0, 100] and q["label"].tolist() == [5, 5]
    assert list(q.columns) == ["row", "reasons", *frame.columns]


# --- the streamed preprocess -------------------------------------------------

def test_streamed_preprocess_is_the_same_in_chunks_of_7_as_in_one(tmp_path):
    raw = tmp_path / "raw"
    export(compose(["data=wine", f"paths.raw={raw}"]))
    outs = {}
    for chunk_rows in (7, 1000):
        work = tmp_path / str(chunk_rows)
        cfg = compose(tiny_overrides(work, raw) + ["data=wine", "model=mlp", "data.in_memory_rows=0",
                                                   f"data.chunk_rows={chunk_rows}"])
        assert get("validate").run(cfg)["engine"] == "chunked"
        assert get("preprocess").run(cfg)["split"] == "hashed"
        outs[chunk_rows] = {n: read_split(cfg.paths.processed, n) for n in ("train", "val", "test")}
    for name in ("train", "val", "test"):
        a, b = outs[7][name], outs[1000][name]
        assert np.array_equal(a["index"], b["index"]) and np.array_equal(a["y"], b["y"])
        assert np.allclose(a["x"], b["x"], atol=1e-5)
    assert len(outs[7]["test"]["index"]) > 10 and not math.isnan(float(outs[7]["train"]["x"].mean()))


def test_hashed_split_is_seeded_per_row_and_near_the_fractions():
    rows = np.arange(200_000)
    part = hashed_split(rows, val_fraction=0.15, test_fraction=0.15, seed=42)
    shares = np.bincount(part, minlength=3) / len(rows)
    assert np.allclose(shares[[TRAIN, VAL, TEST]], [0.7, 0.15, 0.15], atol=0.005)
    assert np.array_equal(hashed_split(rows[5:9], val_fraction=0.15, test_fraction=0.15, seed=42), part[5:9])
    assert not np.array_equal(hashed_split(rows, val_fraction=0.15, test_fraction=0.15, seed=43), part)


def test_split_files_are_what_np_save_writes(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(3, 1, 2, 4)
    y, index = np.array([0, 2, 1]), np.array([4, 8, 9])
    write_split(tmp_path, "val", x, y, index)
    for key, array in (("x", x), ("y", y), ("index", index)):
        buf = bytes_io.BytesIO()
        np.save(buf, array.astype(np.float32 if key == "x" else np.int64))
        assert (tmp_path / "val" / f"{key}.npy").read_bytes() == buf.getvalue()
    loaded = read_split(tmp_path, "val", mmap=True)
    assert np.array_equal(loaded["x"], x) and isinstance(loaded["x"], np.memmap)
