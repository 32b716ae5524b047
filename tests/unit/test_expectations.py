"""Suites as YAML (`expect:` entries naming any GX expectation) and `maas expectations suggest`."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from conftest import ROOT
from omegaconf import OmegaConf

from maas.config import compose
from maas.errors import ConfigError, DataValidationError


@pytest.fixture(scope="module")
def wine_raw(tmp_path_factory):
    from maas.data.sources import export

    raw = tmp_path_factory.mktemp("wine-raw")
    export(compose(["data=wine", f"paths.raw={raw}"]))
    return raw


def _wine(raw, *overrides, **kwargs):
    return compose(["data=wine", f"paths.raw={raw}", *overrides], **kwargs)


def _expect(*entries: str):
    """An expectations config holding only `expect:` with these YAML entries."""
    return OmegaConf.create(f"{{exact_columns: true, expect: [{', '.join(entries)}]}}")


def test_compose_checks_the_columns_expect_entries_name():
    with pytest.raises(ConfigError, match=re.escape(
            "expectations.expect[1] (expect_column_mean_to_be_between): column='alcohl' is not a column of the data "
            "(data.features and data.label_column); did you mean 'alcohol'?")):
        compose(["data=wine", "expectations.expect=[{expect_column_to_exist: {column: hue}},"
                              "{expect_column_mean_to_be_between: {column: alcohl, min_value: 1}}]"])


@pytest.mark.parametrize("entry, named", [
    ("{expect_column_mean_to_be_between: null, column: alcohol}",
     "expectations.expect[1] has keys ['expect_column_mean_to_be_between', 'column']: each entry is one"),
    ("{great_expectations.expectations.ExpectColumnMeanToBeBetween: {column: alcohol}}", "never an import path"),
    ("{ExpectColumnMeanToBeBetween: {column: alcohol}}", "snake_case: expect_column_mean_to_be_between"),
    ("{expect_column_mean_to_be_between: [alcohol, 1, 2]}", "its arguments must be a mapping"),
])
def test_the_shape_of_expect_entries_is_checked_without_gx(entry, named):
    from maas.validation.declared import entries

    with pytest.raises(ConfigError, match=re.escape(named)):
        entries(_expect("{expect_column_to_exist: {column: hue}}", entry))


def test_an_unknown_expectation_name_is_refused_with_the_close_ones():
    from maas.validation.declared import build

    with pytest.raises(ConfigError, match=re.escape(
            "expectations.expect[0]: 'expect_column_mean_to_be_betwen' is not a Great Expectations expectation; "
            "did you mean expect_column_mean_to_be_between, ")):
        build(_expect("{expect_column_mean_to_be_betwen: {column: alcohol}}"))


@pytest.mark.parametrize("args, complaint", [
    ("{column: alcohol, min_value: lots}", "min_value: value is not a valid float"),
    ("{column: alcohol, min_value: 1, maximum: 2}", "maximum: extra fields not permitted"),
    ("{min_value: 1}", "column: field required"),
])
def test_bad_arguments_name_the_entry_and_gx_complaint(args, complaint):
    from maas.validation.declared import build

    with pytest.raises(ConfigError, match=re.escape("expectations.expect[1] (expect_column_mean_to_be_between) "
                                                    "has bad arguments")) as e:
        build(_expect("{expect_column_to_exist: {column: hue}}", f"{{expect_column_mean_to_be_between: {args}}}"))
    assert complaint in str(e.value)


def test_the_shipped_table_suites_declare_gx_expectations_that_hold(wine_raw):
    from maas.data.sources import read_raw
    from maas.validation.suite import validate_frame

    cfg = _wine(wine_raw)
    names = [next(iter(e)) for e in cfg.expectations.expect]
    assert "expect_column_mean_to_be_between" in names
    report = validate_frame(read_raw(cfg), cfg.data, cfg.expectations)
    assert report["success"] and report["statistics"]["evaluated_expectations"] == 4 + len(names)


def test_a_declared_expectation_the_data_fails_fails_validate_naming_it(wine_raw, tmp_path):
    from maas.registry import get

    cfg = _wine(wine_raw, f"paths.validated={tmp_path / 'validated'}",
                "expectations.expect=[{expect_column_to_exist: {column: hue}},"
                "{expect_column_mean_to_be_between: {column: alcohol, min_value: 13.5, max_value: 14}}]")
    with pytest.raises(DataValidationError, match=re.escape(
            "expect_column_mean_to_be_between on column 'alcohol' (expectations.expect[1]): "
            "{'observed_value': 13.0006")) as e:
        get("validate").run(cfg)
    assert "failed 1 expectation(s)" in str(e.value)
    shutil.rmtree(str(e.value).rsplit("Data Docs of this run: ", 1)[1].rsplit("/data_docs/", 1)[0])


def test_suggest_writes_a_suite_that_composes_and_passes_its_data_and_catches_a_change(wine_raw, tmp_path, capsys):
    from maas.cli import main
    from maas.data.sources import read_raw
    from maas.validation.suite import validate_frame

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    out = tmp_path / "conf" / "expectations" / "wine_profiled.yaml"
    argv = ["expectations", "suggest", "data=wine", f"paths.raw={wine_raw}", "--out", str(out)]
    assert main(argv) == 0 and f"wrote {out}" in capsys.readouterr().err
    text = out.read_text()
    assert "expect_column_values_to_be_between: {column: proline, min_value: 270, max_value: 1700}" in text
    assert main(argv) == 2 and "--force overwrites it" in capsys.readouterr().err
    assert out.read_text() == text

    cfg = _wine(wine_raw, "expectations=wine_profiled", config_dir=tmp_path / "conf")
    assert cfg.expectations.suite_name == "wine_profiled" and cfg.expectations.label_set == [0, 1, 2]
    frame = read_raw(cfg)
    report = validate_frame(frame, cfg.data, cfg.expectations)
    assert report["success"], report["failed"]
    # not-null and a range per column, plus columns, rows, label not-null and set
    assert report["statistics"]["evaluated_expectations"] == 13 * 2 + 4

    bad = frame.copy()
    bad.loc[7, "proline"] = 5000.0
    bad.loc[9, "hue"] = None
    bad = pd.concat([bad, bad.iloc[:1].assign(label=3)])
    failed = validate_frame(bad, cfg.data, cfg.expectations)["failed"]
    named = {(f["expectation"], f["column"]) for f in failed}
    assert named == {("expect_column_values_to_be_between", "proline"),
                     ("expect_column_values_to_not_be_null", "hue"),
                     ("expect_column_values_to_be_in_set", "label")}
    assert all(f["declared"].startswith("expectations.expect[") for f in failed if f["column"] != "label")


def test_ranges_are_rounded_outward():
    from maas.suggest_suite import nice_ceil, nice_floor

    assert [nice_floor(v) for v in (11.03, 0.05263, 1680, -1.234, 0)] == [11, 0.052, 1600, -1.3, 0]
    assert [nice_ceil(v) for v in (14.83, 0.1634, 1680, -1.234, 5.8)] == [15, 0.17, 1700, -1.2, 5.8]
