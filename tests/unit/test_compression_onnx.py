"""onnx_fp32 and onnx_int8: the torch model as an ONNX graph, run by ONNX Runtime without torch."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from maas import compression, model_files
from maas.errors import ArtifactError, ConfigError

ARCHS = ("cnn", "mlp", "lstm", "gru", "transformer", "autoencoder")  # conf/model


def source_of(spec: dict, weights: dict, calibration: np.ndarray, calibration_rows=512) -> compression.Source:
    settings = {"onnx_int8": {"calibration_rows": calibration_rows}}
    return compression.Source(spec=spec, weights=weights, settings=settings, calibration=calibration)


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The tiny run's trained cnn as the compress stage hands it to a method, with the test split."""
    from maas.stages.preprocess import load_split

    cfg = tiny_run[0]
    spec = model_files.read_spec(cfg.paths.trained)
    source = source_of(spec, model_files.read_weights(cfg.paths.trained, spec), load_split(cfg, "val")[0])
    return cfg, source, load_split(cfg, "test")


@pytest.fixture(scope="module")
def variants(trained, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("onnx-variants")
    for method in ("onnx_fp32", "onnx_int8"):
        (out / method).mkdir()
        compression.get(method).write(trained[1], out / method)
    return {method: out / method for method in ("onnx_fp32", "onnx_int8")}


def test_onnx_fp32_answers_as_the_torch_model_does(trained, variants):
    cfg, _, (x, _) = trained
    ref = model_files.load(cfg.paths.trained).predictor.predict(x).proba
    loaded = model_files.load(variants["onnx_fp32"])
    got = loaded.predictor.predict(x).proba
    assert model_files.runtime(loaded.spec) == "onnxruntime" and loaded.spec["weights"] == "model.onnx"
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5
    assert np.array_equal(got.argmax(1), ref.argmax(1))


def test_onnx_int8_keeps_accuracy_and_is_a_quarter_of_the_size(trained, variants):
    cfg, _, (x, y) = trained
    fp32 = model_files.load(cfg.paths.trained).predictor.predict(x).proba
    loaded = model_files.load(variants["onnx_int8"])
    int8 = loaded.predictor.predict(x).proba
    assert abs((int8.argmax(1) == y).mean() - (fp32.argmax(1) == y).mean()) <= 0.01
    assert np.allclose(int8.sum(1), 1, atol=1e-5)
    # The softmax runs in float: int8 probabilities would take a few dozen distinct values.
    assert len(np.unique(int8)) > int8.size // 2
    size = (variants["onnx_int8"] / "model.int8.onnx").stat().st_size
    assert (Path(cfg.paths.trained) / "weights.safetensors").stat().st_size / size >= 3.5
    recorded = loaded.spec["compression"]
    assert recorded == {"method": "onnx_int8", "format": "QDQ", "calibration_rows": 270, "opset": 18,
                        "outputs": ["proba"]}  # the tiny run's validation split has 270 rows


@pytest.mark.parametrize("method", ["onnx_fp32", "onnx_int8"])
def test_a_rows_answer_does_not_depend_on_its_batch_mates(trained, variants, method):
    x = trained[2][0][:40]
    predict = model_files.load(variants[method]).predictor.predict
    together = predict(x).proba
    alone = np.concatenate([predict(x[i:i + 1]).proba for i in range(len(x))])
    reversed_ = predict(x[::-1]).proba[::-1]
    sevens = np.concatenate([predict(x[i:i + 7]).proba for i in range(0, len(x), 7)])
    assert all(np.array_equal(together, other) for other in (alone, reversed_, sevens))


def test_the_stored_graph_says_nothing_about_the_machine_that_exported_it(variants):
    import onnx

    data = (variants["onnx_fp32"] / "model.onnx").read_bytes()
    graph = onnx.load_from_string(data).graph
    assert not any(node.metadata_props or node.doc_string for node in graph.node)
    assert b"maas/models" not in data and str(Path.cwd()).encode() not in data  # no stack traces with paths
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["proba"]


def rewrite(directory: Path, tmp_path: Path, data: bytes) -> Path:
    """A copy of the variant holding `data` as its graph, with model.yaml's sha256 updated to match:
    what someone who can write the model directory could store."""
    out = tmp_path / "edited"
    shutil.copytree(directory, out)
    spec = yaml.safe_load((out / "model.yaml").read_text())
    (out / spec["weights"]).write_bytes(data)
    spec["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (out / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def renamed_output(data: bytes) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    for node in model.graph.node:
        node.output[:] = ["logits" if o == "proba" else o for o in node.output]
    model.graph.output[0].name = "logits"
    return model.SerializeToString()


def free_batch(data: bytes) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return model.SerializeToString()


@pytest.mark.parametrize("edit, message", [
    (renamed_output, r"its outputs are \[\('logits', 'tensor\(float\)', \[16, 10\]\)\], but maas exports "
                     r"\[\('proba', 'tensor\(float\)', \[16, 10\]\)\]"),
    (free_batch, r"its input's batch size is 'batch', not a fixed number of rows"),
    (lambda data: b"not a graph" + data[:100], "is not an ONNX model ONNX Runtime can load"),
], ids=["other output names", "free batch size", "not onnx"])
def test_a_graph_that_is_not_what_maas_exports_is_refused_on_load(variants, tmp_path, edit, message):
    directory = variants["onnx_fp32"]
    edited = rewrite(directory, tmp_path, edit((directory / "model.onnx").read_bytes()))
    with pytest.raises(ArtifactError, match=message):
        model_files.load(edited)


def test_a_tampered_graph_is_refused_before_onnx_runtime_reads_it(variants, tmp_path):
    out = tmp_path / "tampered"
    shutil.copytree(variants["onnx_int8"], out)
    graph = bytearray((out / "model.int8.onnx").read_bytes())
    graph[len(graph) // 2] ^= 0x01
    (out / "model.int8.onnx").write_bytes(bytes(graph))
    with pytest.raises(ArtifactError, match="model.int8.onnx has sha256 .* the file is corrupt or was replaced"):
        model_files.load(out)


@pytest.mark.parametrize("threads", ["many", "0"])
def test_a_bad_thread_count_is_named(variants, monkeypatch, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    with pytest.raises(ConfigError, match=f"OMP_NUM_THREADS='{threads}' must be a whole number of threads >= 1"):
        model_files.load(variants["onnx_fp32"])


def test_the_onnx_variant_loads_and_answers_without_torch(variants):
    """What the Bento imports to serve an ONNX variant: never torch (seconds of start-up, and not in its image)."""
    script = f"""
import sys
import numpy as np
import maas.model_files, maas.data.preprocessor, maas.compression, maas.compression.onnx_int8
before = sorted(m for m in ("torch", "tensorflow") if m in sys.modules)
loaded = maas.model_files.load({str(variants["onnx_int8"])!r})
proba = loaded.predictor.predict(np.zeros((3, 1, 8, 8), np.float32)).proba
print(before, sorted(m for m in ("torch", "tensorflow", "onnx") if m in sys.modules), proba.shape)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["[]", "[]", "(3,", "10)"], out.stdout


def test_the_autoencoder_keeps_its_anomaly_scores_unclipped(trained, tmp_path):
    """int8 calibrates on clean images; a noisy image's score must still come out at its own scale."""
    import torch

    from maas.backends.torch.api import get_weights, predictor
    from maas.data.preprocessor import Preprocessor
    from maas.models import build_model

    cfg, cnn, (x, _) = trained
    torch.manual_seed(0)
    arch = {"arch": "autoencoder", "channels": 8, "code": 16}
    model = build_model(arch).eval()
    spec = {**cnn.spec, "model": arch}
    source = source_of(spec, get_weights(model), cnn.calibration)
    noisy = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json").add_noise(x, 4.0, 0)
    both = np.concatenate([x, noisy])
    ref = predictor(model).predict(both).anomaly
    scores = {}
    for method in ("onnx_fp32", "onnx_int8"):
        (tmp_path / method).mkdir()
        compression.get(method).write(source, tmp_path / method)
        loaded = model_files.load(tmp_path / method)
        assert loaded.spec["compression"]["outputs"] == ["proba", "anomaly"]
        scores[method] = loaded.predictor.predict(both).anomaly
    assert np.allclose(scores["onnx_fp32"], ref, rtol=1e-4)
    int8, clean = scores["onnx_int8"], slice(0, len(x))
    # Clipped to the clean images' range, the noisy scores came out ~50x too small (median error ~90%).
    assert np.median(np.abs(int8 - ref) / ref) < 0.3 and int8.max() > 0.5 * ref.max()
    assert int8[len(x):].mean() > 3 * int8[clean].mean()


def test_which_models_each_method_takes():
    keras = {"backend": "tensorflow", "model": {"arch": "cnn"}}
    assert "trained with tensorflow" in compression.get("onnx_fp32").applies(keras)
    assert "trained with tensorflow" in compression.get("onnx_int8").applies(keras)
    for arch in ARCHS:
        spec = {"backend": "torch", "model": {"arch": arch}}
        assert compression.get("onnx_fp32").applies(spec) is None
        reason = compression.get("onnx_int8").applies(spec)
        assert (reason is None) == (arch not in ("lstm", "gru")), (arch, reason)
    assert "recurrent weights in float" in compression.get("onnx_int8").applies({"backend": "torch",
                                                                                 "model": {"arch": "gru"}})


@pytest.mark.parametrize("rows, message", [(0, "must be an integer >= 1"), ("all", "must be an integer >= 1")])
def test_calibration_rows_are_checked(trained, tmp_path, rows, message):
    source = source_of(trained[1].spec, trained[1].weights, trained[1].calibration, calibration_rows=rows)
    with pytest.raises(ConfigError, match=f"compress.onnx_int8.calibration_rows={rows!r} {message}"):
        compression.get("onnx_int8").write(source, tmp_path)


def test_an_onnx_bento_pins_onnxruntime_and_no_torch():
    from maas.stages.package import service_requirements

    pins = dict(line.split("==") for line in service_requirements("onnxruntime").split())
    assert "onnxruntime" in pins and "numpy" in pins
    assert not {"torch", "tensorflow-cpu", "keras"} & pins.keys()
    assert "torch" in dict(line.split("==") for line in service_requirements("torch").split())


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("cnn", "autoencoder")])  # those two: above
def test_every_architecture_exports(arch, trained, tmp_path):
    """Untrained, so only fp32 is compared with torch; int8 must load and answer where it applies."""
    import torch

    from maas.backends.torch.api import get_weights, predictor
    from maas.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": arch}).eval()
    source = source_of({**trained[1].spec, "model": {"arch": arch}}, get_weights(model), trained[1].calibration)
    x = trained[2][0][:40]
    for method in ("onnx_fp32", "onnx_int8"):
        if compression.get(method).applies(source.spec):
            continue
        (tmp_path / method).mkdir()
        compression.get(method).write(source, tmp_path / method)
        proba = model_files.load(tmp_path / method).predictor.predict(x).proba
        assert np.allclose(proba.sum(1), 1, atol=1e-5)
        if method == "onnx_fp32":
            assert np.abs(proba - predictor(model).predict(x).proba).max() < 1e-5
