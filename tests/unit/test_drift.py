"""Drift: the training profile preprocess writes and package stores, and validate's comparison against it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import copy_outputs
from maas import io
from maas.config import compose
from maas.data.profile import PROFILE_FILE, ProfileBuilder, build_profile, profile_columns, training_profile
from maas.data.sources import export, iter_raw, labels, read_raw
from maas.data.splits import stratified_split
from maas.errors import ConfigError, DataValidationError
from maas.validation import drift
from maas.validation.drift import DriftCheck, ks, psi, settings

LIMITS = {"method": "psi", "warn": 0.1, "fail": 0.25, "min_rows": 100}
REFERENCE = {"bento_tag": "maas-wine:ref", "model_tag": "maas-wine:m", "rows": 124}


def test_psi_and_ks_by_hand():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # A bin training never filled counts as holding EPSILON of its rows: finite, and small for 1% of the rows.
    assert psi([1.0, 0.0], [0.99, 0.01]) == pytest.approx(
        (0.99 - 1) * math.log(0.99) + (0.01 - 1e-4) * math.log(0.01 / 1e-4))
    assert psi([1.0, 0.0], [1.0, 0.0]) == 0.0  # a constant column that stays constant
    assert ks([0.5, 0.5, 0.0], [0.25, 0.5, 0.25]) == pytest.approx(0.25)  # cumulative 0.5/1/1 vs 0.25/0.75/1
    assert ks([0.5, 0.5, 0.0], [0.0, 0.5, 0.5], ordered=False) == pytest.approx(0.5)  # total variation


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """Wine exported as `data=wine` has it, its split's training rows and their profile."""
    raw = tmp_path_factory.mktemp("wine-raw")
    cfg = compose(["data=wine", f"paths.raw={raw}", f"paths.bento={raw / 'no-bento'}"])
    export(cfg)
    frame = read_raw(cfg)
    split = stratified_split(labels(frame, cfg.data), val_fraction=0.15, test_fraction=0.15, seed=cfg.seed)
    return cfg, frame, split.train, training_profile(frame.iloc[split.train], cfg)


def compare(profile, frame, columns, limits=LIMITS):
    return DriftCheck(profile, columns, limits, REFERENCE).update(frame).finish()


def test_the_profile_in_chunks_is_the_profile_in_one_piece(wine, tmp_path):
    cfg, frame, train, _ = wine
    frame = frame.assign(region=np.where(frame["proline"] > 700, "north", "south"))  # a categorical column
    frame.loc[frame.index % 17 == 3, ["magnesium", "region"]] = None                  # and missing values
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    frame = pd.read_csv(path)  # the values the chunks hold
    columns = profile_columns(cfg.data) | {"region": "categorical"}
    keep = set(train.tolist())
    chunk_cfg = OmegaConf.merge(cfg, {"data": {"path": str(path)}})
    for sample_rows in (None, 50):  # every training row, and a sample drawn across chunks
        whole = ProfileBuilder(columns, sample_rows=sample_rows).update(frame.iloc[train]).result()
        chunked = ProfileBuilder(columns, sample_rows=sample_rows)
        for chunk in iter_raw(chunk_cfg, chunk_rows=23):
            chunked.update(chunk[chunk.index.isin(keep)])
        chunked = chunked.result()
        assert chunked["rows"] == whole["rows"] == len(train) and chunked["sample_rows"] == whole["sample_rows"]
        for name, c in whole["columns"].items():
            exact = {k: v for k, v in c.items() if k not in ("mean", "std")}
            assert {k: v for k, v in chunked["columns"][name].items() if k not in ("mean", "std")} == exact, name
            for key in ("mean", "std") if c["type"] == "numeric" else ():  # sums in another order
                assert chunked["columns"][name][key] == pytest.approx(c[key]), name
    magnesium, region = whole["columns"]["magnesium"], whole["columns"]["region"]
    assert 0 < magnesium["null_rate"] < 0.1 and region["null_rate"] == magnesium["null_rate"]
    assert set(region["frequencies"]) == {"north", "south"} and sum(region["frequencies"].values()) == pytest.approx(1)
    assert 5 <= len(magnesium["cuts"]) <= 9 and len(magnesium["proportions"]) == len(magnesium["cuts"]) + 1
    assert sum(magnesium["proportions"]) == pytest.approx(1)


def test_the_same_data_shows_no_drift_and_shifted_columns_are_named(wine):
    cfg, frame, _, profile = wine
    columns = profile_columns(cfg.data)
    same = compare(profile, frame, columns)  # train + val + test: what validate sees on a re-run
    assert same["status"] == "ok" and max(c["psi"] for c in same["columns"].values()) < 0.1
    # What 178 fresh rows against 124 would score by chance over 10 bins: 9 (1/178 + 1/124), said aloud.
    assert same["columns"]["alcohol"]["chance"] == pytest.approx(0.1231, abs=1e-4)
    assert "chance alone averages up to 0.123" in drift.summary(same)

    shifted = frame.copy()
    shifted["alcohol"] += 2 * profile["columns"]["alcohol"]["std"]
    shifted["color_intensity"] *= 1.5
    record = compare(profile, shifted, columns)
    assert record["status"] == "fail" and record["failed"] == ["alcohol", "color_intensity"]
    assert record["worst"]["column"] == "alcohol" and record["columns"]["alcohol"]["psi"] > 1
    assert record["columns"]["alcohol"]["mean"] > record["columns"]["alcohol"]["reference_mean"]
    message = drift.failure_message(record)
    assert "alcohol (" in message and "color_intensity (" in message and "maas-wine:ref" in message

    shifted = frame.assign(color_intensity=frame["color_intensity"] * 1.1)
    record = compare(profile, shifted, columns)
    assert record["status"] == "warn" and record["warned"] == ["color_intensity"] and not record["failed"]
    assert compare(profile, shifted, columns, LIMITS | {"warn": None})["status"] == "ok"
    as_ks = compare(profile, shifted, columns, LIMITS | {"method": "ks", "warn": 0.1, "fail": 0.3})
    assert as_ks["warned"] == ["color_intensity"] and as_ks["worst"]["ks"] == as_ks["columns"]["color_intensity"]["ks"]


def test_few_rows_are_recorded_but_not_judged(wine):
    cfg, frame, _, profile = wine
    record = compare(profile, frame.iloc[:27], profile_columns(cfg.data))  # PSI > 0.25 here is mostly chance
    assert record["status"] == drift.TOO_FEW and "drift.min_rows=100" in record["reason"]
    assert {c["status"] for c in record["columns"].values()} == {"not judged"}


def test_a_categorical_value_training_never_saw_is_drift():
    profile = build_profile(pd.DataFrame({"color": ["red"] * 60 + ["blue"] * 40}), {"color": "categorical"})
    incoming = pd.DataFrame({"color": ["red"] * 50 + ["blue"] * 30 + ["green"] * 20})
    record = DriftCheck(profile, ["color"], LIMITS, REFERENCE).update(incoming).finish()
    assert record["failed"] == ["color"] and record["columns"]["color"]["unseen_values"] == ["green"]
    assert record["columns"]["color"]["ks"] == pytest.approx(0.2)  # 20% moved to a value never seen


def test_no_packaged_model_is_no_reference_and_passes(wine, tiny_run):
    cfg, frame, _, _ = wine
    record = drift.check(cfg, frame)
    assert record["status"] == drift.NO_REFERENCE and "no model is packaged yet" in record["reason"]
    # The tiny run validated before anything was packaged: its drift record says so.
    tiny, _ = tiny_run
    assert io.read_json(Path(tiny.paths.validated) / "result.json")["success"]
    assert io.read_json(Path(tiny.paths.validated) / drift.DRIFT_FILE)["status"] == drift.NO_REFERENCE
    # Drift compares with whatever was packaged before: history, so it stays out of the card (and the Bento).
    assert "drift" not in io.read_json(Path(tiny.paths.reports) / "model_card.json")
    # A model trained on other columns (digits) is no reference for wine either.
    other = drift.check(OmegaConf.merge(cfg, {"paths": {"bento": tiny.paths.bento}}), frame)
    assert other["status"] == drift.NO_REFERENCE and "other columns" in other["reason"]


def test_package_stores_the_profile_and_the_same_data_shows_no_drift(tiny_run):
    import bentoml

    cfg, summaries = tiny_run
    bento, processed = Path(cfg.paths.bento), Path(cfg.paths.processed)
    info = io.read_json(bento / "bento.json")
    stored = Path(bentoml.models.get(info["model_tag"]).path_of("maas")) / PROFILE_FILE
    assert stored.read_bytes() == (bento / info["profile"]).read_bytes() == (processed / PROFILE_FILE).read_bytes()
    record = drift.check(cfg, read_raw(cfg))  # validating the data this model was trained on, again
    assert record["status"] == "ok" and record["reference"]["bento_tag"] == summaries["package"]["bento_tag"]
    assert record["reference"]["rows"] == 1257 and len(record["columns"]) == 64
    assert record["columns"]["pixel_0"]["psi"] == 0.0  # 0 in every image: one bin, no inf
    assert max(c["psi"] for c in record["columns"].values()) < 0.02


def test_validate_fails_on_drift_naming_the_columns_and_keeps_the_last_result(tiny_run, raw_dir, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "validated")
    before = io.dir_sha256(cfg.paths.validated)
    frame = pd.read_csv(raw_dir / "digits.csv")
    pixels = [f"pixel_{i}" for i in range(64)]
    frame[pixels] = np.roll(frame[pixels].to_numpy(), 8, axis=1)  # every image one row lower: still 0..16
    (tmp_path / "raw").mkdir()
    frame.to_csv(tmp_path / "raw" / "digits.csv", index=False)
    cfg.paths.raw, cfg.data.path = str(tmp_path / "raw"), str(tmp_path / "raw" / "digits.csv")
    with pytest.raises(DataValidationError, match=r"column\(s\) drifted at or above drift.fail=0.25 \(PSI\)") as e:
        get_validate().run(cfg)
    message = str(e.value)
    assert "expectation" not in message.split("drifted")[0]  # the suite passed: drift alone failed it
    assert "pixel_" in message and "FAIL" in message and "drift.fail=null" in message
    assert io.dir_sha256(cfg.paths.validated) == before
    shutil.rmtree(Path(message.rsplit("Data Docs of this run: ", 1)[1]).parents[1])


def get_validate():
    from maas.registry import get

    return get("validate")



@pytest.mark.parametrize("values, message", [
    ({"method": "chi2"}, "drift.method='chi2'"),
    ({"warn": 0.3, "fail": 0.2}, "drift.warn=0.3 is above drift.fail=0.2"),
    ({"method": "ks", "fail": 2}, "drift.fail=2 must be a number in [0, 1]"),
    ({"min_rows": -1}, "drift.min_rows=-1"),
])
def test_drift_settings_are_checked(values, message):
    cfg = OmegaConf.create({"drift": {"method": "psi", "warn": 0.1, "fail": 0.25, "min_rows": 100} | values})
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        settings(cfg)
    assert settings(OmegaConf.create({"drift": {"method": "ks", "warn": None, "fail": None, "min_rows": 0}}))
