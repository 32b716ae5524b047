"""tflite_dynamic and tflite_int8: a Keras model converted to a TFLite flatbuffer, run by LiteRT alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import copy_outputs
from maas import compression, io, model_files
from maas.backends.base import BLOCK_ROWS
from maas.config import compose
from maas.errors import ArtifactError, ConfigError
from maas.registry import get

METHODS = ("tflite_dynamic", "tflite_int8")


@pytest.fixture(scope="module")
def tf_run(tiny_run, tmp_path_factory):
    """Two epochs of the tensorflow cnn on the tiny run's digits splits, through the train stage (the tiny config)."""
    from maas.stages.preprocess import load_split

    work = tmp_path_factory.mktemp("tflite")
    cfg = copy_outputs(tiny_run[0], work, "validated", "processed")
    for key in ("trained", "compressed", "reports", "bento", "checkpoints"):  # never the tiny run's own outputs
        cfg.paths[key] = str(work / key)
    cfg.trainer.backend = "tensorflow"
    get("train").run(cfg)
    splits = {name: load_split(cfg, name) for name in ("val", "test")}
    return cfg, splits


def source_of(cfg, splits, trained: Path | None = None) -> compression.Source:
    from omegaconf import OmegaConf

    trained = trained or Path(cfg.paths.trained)
    spec = model_files.read_spec(trained)
    return compression.Source(spec=spec, weights=model_files.read_weights(trained, spec),
                              settings=OmegaConf.to_container(cfg.compress, resolve=True),
                              calibration=splits["val"][0])


@pytest.fixture(scope="module")
def variants(tf_run, tmp_path_factory):
    """Each method's variant written once from the trained model: method -> its directory."""
    cfg, splits = tf_run
    out = {}
    for method in METHODS:
        directory = tmp_path_factory.mktemp(method)
        compression.get(method).write(source_of(cfg, splits), directory)
        out[method] = directory
    return out


def batchings(predict, x: np.ndarray) -> dict[str, np.ndarray]:
    """The same rows' probabilities predicted alone, all together, reversed and in groups of 7."""
    return {"together": predict(x),
            "alone": np.concatenate([predict(x[i:i + 1]) for i in range(len(x))]),
            "reversed": predict(x[::-1])[::-1],
            "groups of 7": np.concatenate([predict(x[i:i + 7]) for i in range(0, len(x), 7)])}


@pytest.mark.parametrize("method", METHODS)
def test_a_variant_is_4x_smaller_and_as_accurate_as_the_keras_model(tf_run, variants, method):
    cfg, splits = tf_run
    directory = variants[method]
    spec = model_files.read_spec(directory)
    assert spec["runtime"] == "litert" and spec["weights"] == "model.tflite"
    assert spec["compression"]["method"] == method and spec["compression"]["outputs"] == ["logits"]
    fp32_bytes = (Path(cfg.paths.trained) / "weights.safetensors").stat().st_size
    assert compression.artifact_bytes(directory, spec) < fp32_bytes / 3.5

    x, y = splits["test"]
    keras = model_files.load(cfg.paths.trained).predictor.predict(x).proba
    lite = model_files.load(directory).predictor.predict(x)
    assert lite.proba.shape == (len(x), 10) and lite.proba.dtype == np.float32 and lite.anomaly is None
    assert np.allclose(lite.proba.sum(1), 1, atol=1e-5)
    keras_acc, lite_acc = (keras.argmax(1) == y).mean(), (lite.proba.argmax(1) == y).mean()
    assert keras_acc > 0.5 and abs(lite_acc - keras_acc) <= 0.015, (keras_acc, lite_acc)
    assert (lite.proba.argmax(1) == keras.argmax(1)).mean() >= 0.97


@pytest.mark.parametrize("method", METHODS)
def test_an_answer_does_not_depend_on_its_batch_mates(tf_run, variants, method):
    cfg, splits = tf_run
    predict = model_files.load(variants[method]).predictor.predict
    x = splits["test"][0][:40]
    answers = batchings(lambda rows: predict(rows).proba, x)
    for name, got in answers.items():
        assert np.array_equal(got, answers["together"]), name
    # A batch-mate 100x brighter than anything seen: a scale taken over the whole block would move row 0.
    loud = np.concatenate([x[:1], 100 * x[1:BLOCK_ROWS]])
    assert np.array_equal(predict(loud).proba[:1], answers["alone"][:1])


# Smaller than conf/model's (conversion time grows with the graph), every weight matrix still
# >= 1024 values: smaller ones the converter leaves float32, and the int8 paths would go untested.
FAMILIES = {"mlp": ["model.hidden=[64,32]"], "lstm": ["model.hidden=32", "model.layers=2"], "gru": ["model.hidden=32"],
            "transformer": ["model.dim=32", "model.depth=1", "model.heads=2"], "autoencoder": ["model.channels=16"]}


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_keras_family_converts_unless_applies_says_why(tf_run, tmp_path, arch):
    """Untrained weights: what is checked here is conversion, the outputs' shapes and batch-independence."""
    from omegaconf import OmegaConf

    from maas.backends import get as backend

    cfg, splits = tf_run
    model_cfg = compose([f"model={arch}", "trainer.backend=tensorflow", *FAMILIES[arch]]).model
    api = backend("tensorflow")
    spec = {**model_files.read_spec(cfg.paths.trained), "model": OmegaConf.to_container(model_cfg, resolve=True)}
    source = compression.Source(spec=spec, weights=api.get_weights(api.build(model_cfg)),
                                settings={"tflite_int8": {"calibration_rows": 64}}, calibration=splits["val"][0])
    x = splits["test"][0][:24]
    for method in METHODS:
        reason = compression.get(method).applies(spec)
        if method == "tflite_int8" and arch in ("lstm", "gru"):
            assert reason and "segfault" in reason and "tflite_dynamic" in reason
            continue
        assert reason is None
        compression.get(method).write(source, tmp_path / method)
        loaded = model_files.load(tmp_path / method)
        out = loaded.predictor.predict(x)
        assert out.proba.shape == (24, 10)
        assert (out.anomaly is not None) == (arch == "autoencoder")
        answers = batchings(lambda rows: loaded.predictor.predict(rows).proba, x)
        assert all(np.array_equal(got, answers["together"]) for got in answers.values()), method
        if arch == "autoencoder":
            assert loaded.spec["compression"]["outputs"] == ["logits", "reconstruction"]
            keras = np.asarray(_built(api, model_cfg, source.weights).anomaly_score(x))  # eager: no tracing
            assert np.allclose(out.anomaly, keras, rtol=0.1)
            scores = batchings(lambda rows: loaded.predictor.predict(rows).anomaly, x)
            assert all(np.array_equal(got, scores["together"]) for got in scores.values()), method


def _built(api, model_cfg, weights):
    model = api.build(model_cfg)
    api.set_weights(model, weights)
    return model


def test_applies_names_why_a_model_is_not_convertible(tf_run):
    spec = model_files.read_spec(tf_run[0].paths.trained)
    torch_spec = {**spec, "backend": "torch"}
    for method in METHODS:
        assert compression.get(method).applies(spec) is None
        assert "trained with the torch backend" in compression.get(method).applies(torch_spec)
        assert "input_shape is [64]" in compression.get(method).applies({**spec, "input_shape": [64]})


def test_bad_calibration_rows_are_named(tf_run, tmp_path):
    cfg, splits = tf_run
    source = source_of(cfg, splits)
    source.settings["tflite_int8"] = {"calibration_rows": 0}
    with pytest.raises(ConfigError, match=r"compress\.tflite_int8\.calibration_rows=0 must be an integer >= 1"):
        compression.get("tflite_int8").write(source, tmp_path)
    assert not list(tmp_path.iterdir())


def test_int8_calibrates_on_the_rows_it_is_given(tf_run, tmp_path):
    """A short last block is filled from the first rows, and model.yaml records how many rows were used."""
    from maas.compression._tflite_convert import calibration_blocks

    x = np.arange(20 * 64, dtype=np.float32).reshape(20, 1, 8, 8)
    blocks = calibration_blocks(x, 18)
    assert blocks.shape == (2, BLOCK_ROWS, 1, 8, 8)
    assert np.array_equal(blocks.reshape(-1, 1, 8, 8)[:18], x[:18])
    assert np.array_equal(blocks.reshape(-1, 1, 8, 8)[18:], x[:14])


def test_a_tampered_artifact_is_refused(variants, tmp_path):
    import shutil

    directory = Path(shutil.copytree(variants["tflite_int8"], tmp_path / "v"))
    data = bytearray((directory / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.tflite has sha256 .* the file is corrupt or was replaced"):
        model_files.load(directory)


def _foreign(directory: Path, spec: dict, data: bytes) -> Path:
    """`data` stored as the variant's artifact with a matching sha256, as someone rewriting both files would."""
    directory.mkdir()
    io.write_bytes(directory / "model.tflite", data)
    return model_files.write_artifact_dir(directory, artifact="model.tflite", spec=spec)


def _tflite(input_shape, output_width: int) -> bytes:
    import tensorflow as tf

    w = tf.constant(np.ones((int(np.prod(input_shape[1:])), output_width), np.float32))

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    def f(x):
        return tf.matmul(tf.reshape(x, (input_shape[0], -1)), w)

    return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()


@pytest.mark.parametrize("make, message", [
    (lambda: b"not a flatbuffer", r"is not a TFLite model LiteRT can run: The model is not a valid Flatbuffer"),
    (lambda: _tflite((1, 64), 10), r"takes \[1, 64\] float32; maas exports one float32 input of shape \[16, 1, 8, 8\]"),
    (lambda: _tflite((16, 1, 8, 8), 5), r"returns \[16, 5\] float32; maas exports logits \[16, 10\] float32"),
])
def test_a_foreign_or_malformed_flatbuffer_is_refused_by_name(variants, tmp_path, make, message):
    spec = model_files.read_spec(variants["tflite_dynamic"])
    with pytest.raises(ArtifactError, match=message):
        model_files.load(_foreign(tmp_path / "foreign", spec, make()))


def test_an_autoencoder_variant_without_its_reconstruction_is_refused(variants, tmp_path):
    spec = model_files.read_spec(variants["tflite_dynamic"])
    spec["compression"]["outputs"] = ["logits", "reconstruction"]
    data = (variants["tflite_dynamic"] / "model.tflite").read_bytes()
    with pytest.raises(ArtifactError, match=r"maas exports logits \[16, 10\] float32, reconstruction \[16, 1, 8, 8\]"):
        model_files.load(_foreign(tmp_path / "v", spec, data))


def test_loading_and_predicting_import_litert_alone(variants):
    code = ("import sys, numpy as np; from maas import model_files; "
            f"m = model_files.load({str(variants['tflite_int8'])!r}); "
            "p = m.predictor.predict(np.zeros((3, 1, 8, 8), np.float32)).proba; "
            "print(p.shape, type(m.model).__module__, sorted(k for k in ('tensorflow', 'keras') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(3, 10) ai_edge_litert.interpreter []"


def test_compress_auto_measures_both_tflite_variants(tf_run, tmp_path):
    from omegaconf import OmegaConf

    cfg, _ = tf_run
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.compress.method = "auto"
    cfg.paths.compressed, cfg.paths.reports = str(tmp_path / "compressed"), str(tmp_path / "reports")
    summary = get("compress").run(cfg)
    report = io.read_json(tmp_path / "reports" / "compression.json")
    rows = {v["method"]: v for v in report["variants"]}
    timing = io.read_json(tmp_path / "reports" / "compression_timing.json")["variants"]
    assert {"none", "tflite_dynamic", "tflite_int8"} <= set(rows)
    for method in METHODS:
        row = rows[method]
        assert row["runtime"] == "litert" and row["file"] == "model.tflite"
        assert row["bytes"] < rows["none"]["bytes"] / 3.5
        assert "latency" not in row and set(timing[method]["latency"]) == {"batch1", "batch64"}
        assert abs(row["val_accuracy"] - rows["none"]["val_accuracy"]) <= 0.015
    assert report["chosen"] == summary["chosen"]
    assert model_files.load(tmp_path / "compressed").spec["compression"]["method"] == summary["chosen"]
