"""Each stage on the tiny config: what it writes, and how it fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import copy_outputs
from maas import io
from maas.data.split_files import read_split
from maas.errors import ArtifactError, ConfigError, DataValidationError, GateFailed
from maas.registry import get


def paths(cfg) -> dict[str, Path]:
    return {k: Path(v) for k, v in cfg.paths.items()}


# --- validate ---------------------------------------------------------------

def test_validate_passes_digits_and_records_the_data_hash(tiny_run):
    cfg, summaries = tiny_run
    result = io.read_json(paths(cfg)["validated"] / "result.json")
    assert result["success"] and result["rows"] == 1797
    assert result["data_md5"] == io.file_md5(paths(cfg)["raw"] / "digits.csv")
    # columns + row count + per-pixel not-null and range + label not-null and set
    assert summaries["validate"]["expectations"] == 2 + 64 * 2 + 2
    docs = paths(cfg)["validated"] / "data_docs"
    assert "digits_raw" in (docs / "index.html").read_text()
    assert (docs / "expectations" / "digits_raw.html").exists()
    assert len(list((docs / "validations").rglob("*.html"))) == 1


def _bad_raw(raw_dir: Path, tmp_path: Path, edit) -> Path:
    frame = pd.read_csv(raw_dir / "digits.csv")
    edit(frame)
    out = tmp_path / "bad_raw"
    out.mkdir()
    frame.to_csv(out / "digits.csv", index=False)
    return out


@pytest.mark.parametrize("edit, named", [
    (lambda f: f.__setitem__("pixel_5", f["pixel_5"].where(f.index != 3, 99)), "pixel_5"),
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 0, 11)), "expect_column_values_to_be_in_set"),
    (lambda f: f.__setitem__("pixel_9", f["pixel_9"].astype(float).where(f.index != 0, np.nan)), "to_not_be_null"),
    (lambda f: f.drop(columns=["pixel_63"], inplace=True), "expect_table_columns_to_match_set"),
])
def test_validate_rejects_bad_data_and_keeps_the_last_good_result(tiny_run, raw_dir, tmp_path, edit, named):
    cfg = copy_outputs(tiny_run[0], tmp_path, "validated")
    before = (paths(cfg)["validated"] / "result.json").read_bytes()
    cfg.data.path = str(_bad_raw(raw_dir, tmp_path, edit) / "digits.csv")
    with pytest.raises(DataValidationError, match=named) as e:
        get("validate").run(cfg)
    assert (paths(cfg)["validated"] / "result.json").read_bytes() == before
    failed_docs = Path(str(e.value).rsplit("Data Docs of this run: ", 1)[1])
    assert failed_docs.exists() and failed_docs.parent != paths(cfg)["validated"] / "data_docs"
    shutil.rmtree(failed_docs.parents[1])


# --- preprocess -------------------------------------------------------------

def test_preprocess_writes_disjoint_stratified_splits(tiny_run):
    cfg, _ = tiny_run
    splits = {n: read_split(paths(cfg)["processed"], n) for n in ("train", "val", "test")}
    assert sum(len(s["y"]) for s in splits.values()) == 1797
    idx = [set(s["index"].tolist()) for s in splits.values()]
    assert len(set.union(*idx)) == 1797
    assert all(s["x"].shape[1:] == (1, 8, 8) and s["x"].dtype == np.float32 for s in splits.values())
    counts = np.bincount(splits["test"]["y"], minlength=10)
    assert counts.min() >= 25 and counts.max() <= 29  # 270 test rows, ~27 per class


def test_preprocess_scaling_is_fitted_on_train_only(tiny_run):
    cfg, _ = tiny_run
    from maas.data.preprocessor import Preprocessor
    from maas.data.sources import read_raw, to_arrays

    pre = Preprocessor.load(paths(cfg)["processed"] / "preprocessor.json")
    x, _ = to_arrays(read_raw(cfg), cfg.data)
    train_idx = read_split(paths(cfg)["processed"], "train")["index"]
    assert np.allclose(pre.offset, x[train_idx].mean(0))
    assert not np.allclose(pre.offset, x.mean(0))
    assert (pre.raw_min, pre.raw_max) == (0.0, 16.0)


def test_preprocess_refuses_data_changed_since_validation(tiny_run, raw_dir, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "validated", "processed")
    cfg.data.path = str(_bad_raw(raw_dir, tmp_path, lambda f: f.drop(index=[0], inplace=True)) / "digits.csv")
    before = io.dir_sha256(paths(cfg)["processed"])
    with pytest.raises(ArtifactError, match="changed since it was validated"):
        get("preprocess").run(cfg)
    assert io.dir_sha256(paths(cfg)["processed"]) == before


# --- train ------------------------------------------------------------------

def test_train_writes_safetensors_and_an_architecture_spec(tiny_run):
    cfg, _ = tiny_run
    from safetensors import safe_open

    from maas.model_files import load, read_spec

    trained = paths(cfg)["trained"]
    assert sorted(p.name for p in trained.iterdir()) == ["model.yaml", "weights.safetensors"]
    with safe_open(str(trained / "weights.safetensors"), "pt") as f:
        assert f.metadata()["format"] == "maas.model/1"
    spec = read_spec(trained)
    assert spec["model"]["channels"] == cfg.model.channels and spec["training"]["epochs"] == 2
    assert sum(p.numel() for p in load(trained).model.parameters()) > 10_000


def test_train_logs_metrics_per_epoch(tiny_run):
    cfg, _ = tiny_run
    live = paths(cfg)["reports"] / "train"
    rows = (live / "plots" / "metrics" / "val_accuracy.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + cfg.trainer.epochs  # header + one per epoch
    summary = io.read_json(live / "metrics.json")
    assert 0.5 < summary["best_val_accuracy"] <= 1.0


@pytest.mark.parametrize("override, message", [
    ({"trainer.device": "cuda"}, "no CUDA device"),
    ({"trainer.device": "tpu9"}, "is not a device"),
    ({"trainer.precision": "16-mixed"}, "needs CUDA"),
    ({"trainer.precision": "8"}, "trainer.precision='8'"),
    ({"trainer.backend": "jax"}, "trainer.backend='jax'"),
    ({"trainer.epochs": 0}, "trainer.epochs=0 must be an integer >= 1"),
    ({"trainer.batch_size": 0}, "trainer.batch_size=0"),
    ({"trainer.optimizer.name": "adamm"}, "trainer.optimizer.name='adamm' is not allowed"),
    ({"trainer.optimizer.betas": "oops"}, "trainer.optimizer"),
    ({"trainer.optimizer.lr": -1}, "Invalid learning rate"),
    ({"trainer.scheduler.name": "linear"}, "trainer.scheduler.name='linear'"),
    ({"trainer.freeze": ["feature"]}, "'feature' names no parameters of CNN; its top-level names are features, head"),
    ({"model.init_from": "/nowhere"}, "model.init_from=/nowhere: no maas model directory"),
])
def test_train_config_errors_are_named_and_keep_the_old_outputs(tiny_run, tmp_path, override, message):
    import torch

    if "cuda" in str(override.values()) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    before = io.dir_sha256(paths(cfg)["trained"]), io.dir_sha256(paths(cfg)["reports"] / "train")
    for k, v in override.items():
        OmegaConf.update(cfg, k, v)
    with pytest.raises(ConfigError, match=message):
        get("train").run(cfg)
    assert (io.dir_sha256(paths(cfg)["trained"]), io.dir_sha256(paths(cfg)["reports"] / "train")) == before


def test_a_diverging_run_fails_and_keeps_the_old_outputs(tiny_run, tmp_path):
    from maas.errors import TrainingFailed

    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    before = io.dir_sha256(paths(cfg)["trained"]), io.dir_sha256(paths(cfg)["reports"] / "train")
    cfg.trainer.optimizer.lr, cfg.trainer.epochs = 1e30, 1
    with pytest.raises(TrainingFailed, match="lower trainer.optimizer.lr"):
        get("train").run(cfg)
    assert (io.dir_sha256(paths(cfg)["trained"]), io.dir_sha256(paths(cfg)["reports"] / "train")) == before


def test_train_bf16_autocast_runs_on_cpu(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    cfg.trainer.precision, cfg.trainer.epochs = "bf16-mixed", 1
    summary = get("train").run(cfg)
    assert summary["best_epoch"] == 1 and summary["best_val_accuracy"] > 0.3
    from maas.model_files import read_spec

    assert read_spec(paths(cfg)["trained"])["training"]["precision"] == "bf16-mixed"


def test_train_is_reproducible_with_a_seed(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    get("train").run(cfg)
    assert io.dir_sha256(paths(cfg)["trained"] / "weights.safetensors") == \
        io.dir_sha256(paths(tiny_run[0])["trained"] / "weights.safetensors")


# --- evaluate ---------------------------------------------------------------

def test_evaluate_gate_fails_but_leaves_the_numbers(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "reports")
    (paths(cfg)["reports"] / "metrics.json").unlink()
    cfg.gates.min_test_accuracy = 1.0
    with pytest.raises(GateFailed, match="below gates.min_test_accuracy=1.0"):
        get("evaluate").run(cfg)
    assert io.read_json(paths(cfg)["reports"] / "metrics.json")["test"]["samples"] == 270


# --- compress ---------------------------------------------------------------

def test_compress_int8_is_smaller_and_agrees_with_fp32(tiny_run):
    cfg, _ = tiny_run
    from maas.model_files import load, read_spec
    from maas.stages.preprocess import load_split

    report = io.read_json(paths(cfg)["reports"] / "compression.json")
    assert report["chosen"] == "int8_weights" and report["size_ratio"] > 3.5
    assert [v["method"] for v in report["variants"]] == ["none", "int8_weights"]
    timing = io.read_json(paths(cfg)["reports"] / "compression_timing.json")
    for v in report["variants"]:  # timings differ on every run: kept out of the report DVC tracks
        assert "latency" not in v and "seconds" not in v
        latency = timing["variants"][v["method"]]["latency"]
        assert set(latency) == {"batch1", "batch64"} and latency["batch1"]["p99_ms"] > 0
    assert timing["speedup"] > 0
    assert read_spec(paths(cfg)["compressed"])["compression"]["method"] == "int8_weights"
    assert (paths(cfg)["reports"] / "compression.png").read_bytes()[:4] == b"\x89PNG"
    x, y = load_split(cfg, "test")
    fp32, int8 = (load(paths(cfg)[k]).predictor.predict(x).proba.argmax(1) for k in ("trained", "compressed"))
    assert (fp32 == int8).mean() > 0.97
    assert report["served_test_accuracy"] == (int8 == y).mean()  # what is reported is what is stored


def test_compress_keeps_fp32_when_the_variant_busts_the_budget(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "compressed", "reports")
    cfg.compress.budget_points = -100.0  # a variant would have to gain 100 points: nothing can
    summary = get("compress").run(cfg)
    assert summary["chosen"] == "none"
    assert sorted(p.name for p in paths(cfg)["compressed"].iterdir()) == ["model.yaml", "weights.safetensors"]
    report = io.read_json(paths(cfg)["reports"] / "compression.json")
    assert "no variant is within -100 points" in report["why"] and report["variants"][1]["method"] == "int8_weights"


@pytest.mark.parametrize("key, value, message", [
    ("compress.budget_points", "lots", "must be a number in \\[-100, 100\\]"),
    ("compress.select", "cheapest", "compress.select='cheapest'"),
    ("compress.latency.batches", [0], "compress.latency.batches=\\[0\\] must be a list of batch sizes"),
    ("compress.speed_batch", 8, "compress.speed_batch=8 must be one of compress.latency.batches"),
    ("compress.candidates", ["int4"], "unknown method\\(s\\) \\['int4'\\]"),
])
def test_compress_settings_are_checked_before_anything_is_written(tiny_run, tmp_path, key, value, message):
    cfg = copy_outputs(tiny_run[0], tmp_path, "compressed", "reports")
    before = (paths(cfg)["compressed"] / "model.yaml").read_bytes()
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError, match=message):
        get("compress").run(cfg)
    assert (paths(cfg)["compressed"] / "model.yaml").read_bytes() == before


def test_compress_none_stores_the_fp32_model(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "compressed", "reports")
    cfg.compress.method = "none"
    assert get("compress").run(cfg)["chosen"] == "none"
    assert sorted(p.name for p in paths(cfg)["compressed"].iterdir()) == ["model.yaml", "weights.safetensors"]
    report = io.read_json(paths(cfg)["reports"] / "compression.json")
    assert [v["method"] for v in report["variants"]] == ["none"] and report["size_ratio"] == 1.0


def test_evaluate_gate_out_of_range_is_a_config_error(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "reports")
    cfg.gates.min_test_accuracy = 97
    with pytest.raises(ConfigError, match=r"gates.min_test_accuracy=97 must be a number in \[0, 1\]"):
        get("evaluate").run(cfg)


def test_compress_unknown_method(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "compressed", "reports")
    cfg.compress.method = "int4"
    with pytest.raises(ConfigError, match="compress.method='int4'"):
        get("compress").run(cfg)


# --- package ----------------------------------------------------------------

def test_package_builds_a_bento_with_model_preprocessor_and_card(tiny_run):
    import bentoml

    cfg, summaries = tiny_run
    info = io.read_json(paths(cfg)["bento"] / "bento.json")
    assert info["bento_tag"] == summaries["package"]["bento_tag"]
    assert (paths(cfg)["bento"] / info["archive"]).stat().st_size > 100_000
    model = bentoml.models.get(info["model_tag"])
    stored = {p.name for p in Path(model.path_of("maas")).iterdir()}
    assert {"model.yaml", "weights.int8_weights.safetensors", "preprocessor.json", "serve.json",
            "model_card.json"} <= stored
    assert not any(p.suffix in (".pkl", ".pt", ".pth") for p in Path(model.path).rglob("*"))
    from importlib.metadata import version

    pins = bentoml.bentos.get(info["bento_tag"]).path_of("env/python/requirements.txt")
    assert f"numpy=={version('numpy')}" in Path(pins).read_text().splitlines()
    assert "torch==2.13.0" in Path(pins).read_text().splitlines()
    card = io.read_json(paths(cfg)["reports"] / "model_card.json")
    assert card["data"]["md5"] == io.file_md5(paths(cfg)["raw"] / "digits.csv")
    assert card["metrics"]["test"]["accuracy"] == summaries["evaluate"]["accuracy"]
    assert card["config"]["model"]["channels"] == cfg.model.channels
    md = (paths(cfg)["reports"] / "model_card.md").read_text()
    assert info["model_tag"] in md and "int8_weights" in md


def test_package_model_version_is_a_content_hash(tiny_run):
    from maas.stages.package import save_bento_model

    cfg, _ = tiny_run
    files = [paths(cfg)["compressed"] / "model.yaml"]
    first = save_bento_model("maas-hash-test", files, {})
    assert save_bento_model("maas-hash-test", files, {}) == first


def test_package_without_compressed_model_names_it(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "reports")
    cfg.paths.compressed = str(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="model.yaml not found"):
        get("package").run(cfg)


def test_evaluate_scores_a_reconstructing_model_on_noisy_copies(tiny_run, tmp_path):
    """The autoencoder's anomaly score must rank test images with raw-pixel noise above the clean ones."""
    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    from maas.config import compose

    cfg.model = compose(["model=autoencoder"]).model
    get("train").run(cfg)
    get("evaluate").run(cfg)
    test = io.read_json(paths(cfg)["reports"] / "metrics.json")["test"]
    assert test["anomaly_auroc"] > 0.9, test
    assert "anomaly_auroc" not in io.read_json(paths(tiny_run[0])["reports"] / "metrics.json")["test"]  # cnn: none
