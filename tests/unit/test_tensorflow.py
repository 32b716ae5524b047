"""The TensorFlow backend keeps the torch backend's contract: names, files, errors, training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import tiny_overrides
from maas import backends, model_files
from maas.config import compose
from maas.errors import ArtifactError, ConfigError

FAMILIES = ("cnn", "mlp", "lstm", "gru", "transformer", "autoencoder")
tf_api = backends.get("tensorflow")


def family_cfg(name: str):
    return compose([f"model={name}", "trainer.backend=tensorflow"])


def save(model, cfg, directory: Path, weights=None, compression: str = "none") -> Path:
    directory.mkdir(parents=True)
    spec = {"backend": "tensorflow", "model": OmegaConf.to_container(cfg.model, resolve=True),
            "input_shape": list(cfg.data.image_shape), "compression": {"method": compression}}
    return model_files.write_model_dir(directory, weights=weights or tf_api.get_weights(model), spec=spec)


@pytest.fixture(scope="module")
def digits(tmp_path_factory, raw_dir):
    """The real digits splits, through the validate and preprocess stages on the tiny config."""
    from maas.registry import get

    cfg = compose([*tiny_overrides(tmp_path_factory.mktemp("tf-digits"), raw_dir), "trainer.backend=tensorflow"])
    for stage in ("validate", "preprocess"):
        get(stage).run(cfg)
    from maas.stages.preprocess import load_split

    return cfg, {name: load_split(cfg, name) for name in ("train", "val", "test")}


@pytest.fixture(scope="module")
def trained(digits):
    """Two epochs of the cnn on the real train split (the tiny config: trainer=fast)."""
    cfg, splits = digits
    logged = []
    result = tf_api.train(cfg, splits["train"], splits["val"], log=lambda epoch, m: logged.append((epoch, m)))
    return cfg, splits, result, logged


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_builds_from_its_config_with_stable_weight_names(name, tmp_path):
    import keras

    cfg = family_cfg(name)
    model = tf_api.build(cfg.model)
    assert isinstance(model, keras.Model)
    weights = tf_api.get_weights(model)
    assert weights and all(isinstance(v, np.ndarray) for v in weights.values())
    again = tf_api.get_weights(tf_api.build(cfg.model))  # a second model in the same process: same names
    assert {k: v.shape for k, v in again.items()} == {k: v.shape for k, v in weights.items()}

    x = np.random.default_rng(0).normal(size=(5, *cfg.data.image_shape)).astype(np.float32)
    before = tf_api.predictor(model).predict(x)
    assert before.proba.shape == (5, 10) and before.proba.dtype == np.float32
    assert np.allclose(before.proba.sum(1), 1, atol=1e-5)
    assert (before.anomaly is not None) == (name == "autoencoder")
    # An answer is the same bit for bit whatever it is batched with.
    parts = [tf_api.predictor(model).predict(x[i:j]).proba for i, j in ((0, 2), (2, 3), (3, 5))]
    assert np.array_equal(np.concatenate(parts), before.proba)

    loaded = model_files.load(save(model, cfg, tmp_path / "model"))
    after = loaded.predictor.predict(x)
    assert loaded.spec["backend"] == "tensorflow" and loaded.model.name == name
    assert all(np.array_equal(v, weights[k]) for k, v in tf_api.get_weights(loaded.model).items())
    assert np.array_equal(after.proba, before.proba)
    if name == "autoencoder":
        assert before.anomaly.shape == (5,) and np.array_equal(after.anomaly, before.anomaly)


def test_the_same_arguments_as_torch_for_every_family():
    import inspect

    from maas.models import architectures

    torch_table, tf_table = architectures("torch"), architectures("tensorflow")
    assert set(tf_table) == set(torch_table)
    for name in torch_table:
        a, b = (inspect.signature(t[name].__init__).parameters for t in (torch_table, tf_table))
        assert [(p.name, p.default) for p in a.values()] == [(p.name, p.default) for p in b.values()], name


def test_set_weights_names_missing_unexpected_and_misshaped_arrays():
    model = tf_api.build(family_cfg("cnn").model)
    weights = tf_api.get_weights(model)
    wrong = {**weights, "features.0.kernel": np.zeros((3, 3, 1, 5), np.float32)}
    with pytest.raises(ArtifactError, match=r"features\.0\.kernel \[3, 3, 1, 5\] vs \[3, 3, 1, 32\]"):
        tf_api.set_weights(model, wrong)
    missing = {k: v for k, v in weights.items() if k != "head.5.bias"}
    with pytest.raises(ArtifactError, match=r"missing: head\.5\.bias"):
        tf_api.set_weights(model, missing)
    with pytest.raises(ArtifactError, match=r"unexpected: extra\.kernel"):
        tf_api.set_weights(model, {**weights, "extra.kernel": np.zeros(2, np.float32)})
    assert np.array_equal(tf_api.get_weights(model)["features.0.kernel"], weights["features.0.kernel"])


def test_a_stored_model_of_another_width_is_refused_by_name(tmp_path):
    cfg = family_cfg("mlp")
    directory = save(tf_api.build(cfg.model), cfg, tmp_path / "model")
    spec = model_files.read_spec(directory)
    spec["model"]["hidden"] = [32, 64]
    import yaml

    (directory / model_files.MODEL_FILE).write_text(yaml.safe_dump(spec))
    with pytest.raises(ArtifactError, match=r"net\.1\.kernel \[64, 1024\] vs \[64, 32\]"):
        model_files.load(directory)


def test_two_epochs_on_digits_learn_and_log_every_epoch(trained):
    cfg, splits, result, logged = trained
    assert cfg.trainer.epochs == 2 and [e for e, _ in logged] == [1, 2]
    assert set(logged[0][1]) == {"train_loss", "val_loss", "val_accuracy", "lr"}
    assert len(result.history) == 2 and 1 <= result.best_epoch <= 2
    best = result.history[result.best_epoch - 1]
    assert best["val_loss"] == min(h["val_loss"] for h in result.history)
    assert result.best_val_accuracy == best["val_accuracy"] > 0.5
    assert result.record["device"] == "/CPU:0" and result.record["precision"] == "32"
    x, y = splits["test"]
    accuracy = (tf_api.predictor(result.model).predict(x).proba.argmax(1) == y).mean()
    assert accuracy > 0.5, accuracy  # chance is 0.1


def test_int8_storage_keeps_predictions_close(trained, tmp_path):
    from maas.compression.int8_weights import quantize

    cfg, splits, result, _ = trained
    x, _ = splits["test"]
    fp32 = tf_api.predictor(result.model).predict(x).proba
    stored = quantize(tf_api.get_weights(result.model), tf_api.OUTPUT_CHANNEL_AXIS)
    assert stored["features.0.kernel.__int8"].dtype == np.int8
    assert stored["features.0.kernel.__scale"].shape == (32,)  # one scale per output channel (last axis)
    loaded = model_files.load(save(result.model, cfg, tmp_path / "int8", weights=stored, compression="int8_weights"))
    int8 = loaded.predictor.predict(x).proba
    assert np.abs(int8 - fp32).max() < 0.05
    assert (int8.argmax(1) == fp32.argmax(1)).mean() > 0.98


@pytest.mark.parametrize("key, value, match", [
    ("trainer.device", "tpu", r"trainer\.device='tpu' is not allowed"),
    ("trainer.device", "mps", r"trainer\.device='mps' is not allowed"),
    ("trainer.precision", "fp8", r"trainer\.precision='fp8' is not allowed"),
    ("trainer.precision", "16-mixed", r"trainer\.precision=16-mixed needs a GPU"),
    ("trainer.label_smoothing", 1.5, r"trainer\.label_smoothing=1\.5"),
    ("trainer.grad_clip_norm", -1, r"trainer\.grad_clip_norm=-1"),
    ("trainer.optimizer.name", "lion", r"trainer\.optimizer\.name='lion' is not allowed"),
    ("trainer.optimizer.lr", 0, r"trainer\.optimizer\.lr=0 must be"),
    ("trainer.scheduler.min_lr_ratio", 2, r"trainer\.scheduler\.min_lr_ratio=2"),
])
def test_bad_trainer_settings_are_named_before_training(digits, key, value, match):
    cfg, splits = digits
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.update(cfg, "trainer.device", "cpu")
    OmegaConf.update(cfg, key, value)
    calls = []
    with pytest.raises(ConfigError, match=match):
        tf_api.train(cfg, splits["train"], splits["val"], log=lambda *a: calls.append(a))
    assert not calls


def test_a_gpu_that_is_not_there_is_a_config_error():
    import tensorflow as tf

    from maas.backends.tensorflow.fit import pick_device

    gpus = len(tf.config.list_physical_devices("GPU"))
    for device in (f"gpu:{gpus}", f"cuda:{gpus}") + (() if gpus else ("gpu", "cuda")):
        with pytest.raises(ConfigError, match=rf"trainer\.device={device} but TensorFlow sees"):
            pick_device(device)


def test_tensorflow_is_imported_only_by_its_backend():
    code = ("import sys, maas.cli, maas.config, maas.models, maas.model_files, maas.backends, maas.stages; "
            "from maas.registry import all_stages; all_stages(); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_random_shift_translates_with_edge_pixels_repeated():
    from maas.backends.tensorflow.fit import random_shift

    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4)
    shifted = random_shift(x, 2, np.random.default_rng(0))
    dy, dx = np.random.default_rng(0).integers(-2, 3, size=(2, 2))
    for b in range(2):  # torch's definition, image by image: a clamped index grid
        rows = np.clip(np.arange(5) + dy[b], 0, 4)
        cols = np.clip(np.arange(4) + dx[b], 0, 3)
        assert np.array_equal(shifted[b], x[b][:, rows][:, :, cols])
    assert random_shift(x, 0, np.random.default_rng(0)) is x
