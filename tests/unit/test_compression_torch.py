"""The torch-only compression methods: int8_dynamic, int8_static, prune.

Each is written from the tiny run's trained CNN once (module fixture), loaded back
from disk as the Bento loads it, and checked for what it promises: smaller,
close to fp32 on val, one row's answer independent of its batch-mates, nothing
but safetensors + model.yaml stored, tampering refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import copy_outputs
from maas import compression, io, model_files
from maas.errors import ArtifactError, ConfigError
from maas.registry import get
from maas.stages.compress import settings
from maas.stages.preprocess import load_split

METHODS = ("int8_dynamic", "int8_static", "prune")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as a served worker runs: int8_dynamic answers one row per call, and tiny
    calls on two threads of a busy machine spend most of their time waiting for each other."""
    from maas.latency import one_thread

    with one_thread():
        yield


def source_for(cfg, spec=None, weights=None, **changes) -> compression.Source:
    """A compression.Source as the compress stage builds it (prune fine-tunes one epoch here, to keep tests quick)."""
    s = settings(cfg)
    s["prune"] = {**s["prune"], "finetune_epochs": 1}
    for key, value in changes.items():
        method, option = key.split("__")
        s[method] = {**s[method], option: value}
    trained = Path(cfg.paths.trained)
    spec = spec or model_files.read_spec(trained)
    return compression.Source(spec=spec, weights=weights or model_files.read_weights(trained, spec), settings=s,
                              calibration=load_split(cfg, "val")[0], seed=int(cfg.seed),
                              train=lambda: load_split(cfg, "train"))


@pytest.fixture(scope="module")
def made(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """Each method's variant of the tiny run's CNN, written once."""
    cfg, _ = tiny_run
    source = source_for(cfg)
    out = {}
    for method in METHODS:
        out[method] = tmp_path_factory.mktemp(method)
        compression.get(method).write(source, out[method])
    return out


@pytest.fixture(scope="module")
def loaded(made) -> dict:
    return {method: model_files.load(directory) for method, directory in made.items()}


def accuracy(directory_or_loaded, x, y) -> float:
    model = directory_or_loaded if isinstance(directory_or_loaded, model_files.LoadedModel) \
        else model_files.load(directory_or_loaded)
    return float((model.predictor.predict(x).proba.argmax(1) == y).mean())


def test_each_variant_is_smaller_than_fp32(tiny_run, made):
    cfg, _ = tiny_run
    trained = Path(cfg.paths.trained)
    fp32 = compression.artifact_bytes(trained, model_files.read_spec(trained))
    sizes = {m: compression.artifact_bytes(d, model_files.read_spec(d)) for m, d in made.items()}
    assert fp32 / sizes["int8_dynamic"] > 3.8   # every conv/linear kernel int8 (the linears are 88% of the CNN)
    assert fp32 / sizes["int8_static"] > 3.7    # int8 kernels + float64 scales and int64 zero points per channel
    stored = model_files.read_weights(made["prune"])
    pruned = [k[: -len(".__values")] for k in stored if k.endswith(".__values")]
    n = sum(int(np.prod(stored[f"{k}.__shape"])) for k in pruned)
    kept = sum(len(stored[f"{k}.__values"]) for k in pruned)
    assert sorted(pruned) == ["features.0.weight", "features.3.weight", "head.2.weight", "head.5.weight"]
    assert kept <= round(0.25 * n)
    rest = sum(v.nbytes for k, v in stored.items() if not k.startswith(tuple(pruned)))
    # (1 - s) * 4 + 1/8 bytes per pruned weight, plus the dense rest and the safetensors header
    assert sizes["prune"] < kept * 4 + n / 8 + rest + 4096
    assert fp32 / sizes["prune"] > 3.3


def test_each_variant_is_as_accurate_as_fp32_on_val(tiny_run, loaded):
    cfg, _ = tiny_run
    x, y = load_split(cfg, "val")
    reference = model_files.load(cfg.paths.trained).predictor.predict(x).proba.argmax(1)
    fp32 = (reference == y).mean()
    for method in ("int8_dynamic", "int8_static"):
        predicted = loaded[method].predictor.predict(x).proba.argmax(1)
        assert (predicted == reference).mean() >= 0.97, method
        assert abs((predicted == y).mean() - fp32) <= 0.02, method
    # 75% of the weights gone, one epoch of fine-tuning: no worse than 2 points below fp32
    assert accuracy(loaded["prune"], x, y) >= fp32 - 0.02


@pytest.mark.parametrize("method", METHODS)
def test_a_rows_answer_does_not_depend_on_its_batch(tiny_run, loaded, method):
    x = load_split(tiny_run[0], "val")[0][:24]
    predict = loaded[method].predictor.predict
    together = predict(x).proba
    alone = np.concatenate([predict(x[i:i + 1]).proba for i in range(len(x))])
    reversed_ = predict(x[::-1]).proba[::-1]
    sevens = np.concatenate([predict(x[i:i + 7]).proba for i in range(0, len(x), 7)])
    for other in (alone, reversed_, sevens):
        assert np.array_equal(together, other)


def test_int8_dynamic_needs_one_row_per_call(loaded, tiny_run):
    """Why its predictor runs rows=1: in a block, a row's activation scale comes from its batch-mates."""
    from maas.backends.torch.api import TorchPredictor

    x = load_split(tiny_run[0], "val")[0][:16]
    blocked = TorchPredictor(loaded["int8_dynamic"].model, rows=16)
    alone = np.concatenate([blocked.predict(x[i:i + 1]).proba for i in range(len(x))])
    assert not np.array_equal(blocked.predict(x).proba, alone)


def test_int8_dynamic_runs_exactly_the_stored_int8_weights(made, loaded):
    stored = model_files.read_weights(made["int8_dynamic"])
    model = loaded["int8_dynamic"].model
    dynamic = {n: m for n, m in model.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")}
    assert sorted(dynamic) == ["head.2", "head.5"]
    for name, module in dynamic.items():
        assert np.array_equal(module.weight().int_repr().numpy(), stored[f"{name}.weight.__int8"])


def test_int8_static_from_disk_answers_as_the_model_it_quantized(tiny_run, loaded):
    """Bit for bit: the arrays stored rebuild the quantized model exactly (write checks it too)."""
    from maas.backends.torch import api
    from maas.compression import _torch_ao, int8_static

    cfg, _ = tiny_run
    source = source_for(cfg)
    model = _torch_ao.build(source.spec)
    api.set_weights(model, source.weights)
    in_memory = int8_static._convert(model, source.spec, source.calibration[:int8_static.calibration_rows(source)])
    x = load_split(cfg, "test")[0]
    static = loaded["int8_static"]
    assert np.array_equal(static.predictor.predict(x).proba, api.predictor(in_memory).predict(x).proba)
    kinds = {type(m).__name__ for m in static.model.modules() if "quantized" in type(m).__module__}
    assert {"ConvReLU2d", "LinearReLU", "Linear"} <= kinds


@pytest.mark.parametrize("method", METHODS)
def test_nothing_but_safetensors_and_model_yaml_is_stored(made, method):
    directory = made[method]
    assert sorted(p.name for p in directory.iterdir()) == sorted(["model.yaml", f"weights.{method}.safetensors"])
    spec = yaml.safe_load((directory / "model.yaml").read_text())
    assert spec["compression"]["method"] == method and spec.get("runtime", "torch") == "torch"
    raw = (directory / spec["weights"]).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # safetensors: a JSON header, then raw arrays
    assert header.pop("__metadata__") == {"format": model_files.FORMAT}
    assert {t["dtype"] for t in header.values()} <= {"F32", "F64", "I64", "I8", "U8"}
    assert sum(np.prod(t["shape"], dtype=int) * {"F32": 4, "F64": 8, "I64": 8, "I8": 1, "U8": 1}[t["dtype"]]
               for t in header.values()) == len(raw) - 8 - int.from_bytes(raw[:8], "little")


@pytest.mark.parametrize("method", METHODS)
def test_a_tampered_variant_is_refused(made, method, tmp_path):
    copy = shutil.copytree(made[method], tmp_path / method)
    path = copy / f"weights.{method}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        model_files.load(copy)


def test_fp32_weights_for_init_from(tiny_run, made):
    trained = model_files.read_weights(tiny_run[0].paths.trained)
    dynamic = model_files.read_init_weights(str(made["int8_dynamic"]), "torch")
    dense = model_files.read_init_weights(str(made["prune"]), "torch")
    for weights in (dynamic, dense):
        assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in trained.items()}
        assert all(v.dtype == trained[k].dtype for k, v in weights.items())
    names = ["features.0.weight", "features.3.weight", "head.2.weight", "head.5.weight"]
    zeros = sum(int((dense[n] == 0).sum()) for n in names) / sum(dense[n].size for n in names)
    assert 0.75 <= zeros < 0.76
    with pytest.raises(ConfigError, match="keeps no torch weights"):
        model_files.read_init_weights(str(made["int8_static"]), "torch")


def test_prune_is_deterministic_and_reports_each_epoch(tiny_run, tmp_path, capsys):
    cfg, _ = tiny_run
    x, y = load_split(cfg, "train")
    outs = []
    for i in range(2):
        source = source_for(cfg, prune__finetune_epochs=2)
        source.train = lambda: (x[:192], y[:192])
        outs.append(tmp_path / str(i))
        outs[-1].mkdir()
        compression.get("prune").write(source, outs[-1])
    assert io.file_sha256(outs[0] / "weights.prune.safetensors") == io.file_sha256(outs[1] / "weights.prune.safetensors")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compress: prune: epoch")]
    assert [line.split(" loss ")[0] for line in lines] == ["compress: prune: epoch 1/2", "compress: prune: epoch 2/2"] * 2
    assert all(float(line.split(" loss ")[1]) > 0 for line in lines)


@pytest.mark.parametrize("method, key, value, message", [
    ("prune", "prune__sparsity", 1.5, r"compress.prune.sparsity=1.5 must be a fraction in \(0, 1\)"),
    ("prune", "prune__finetune_epochs", -1, "compress.prune.finetune_epochs=-1 must be an integer >= 0"),
    ("int8_static", "int8_static__calibration_rows", 0, "compress.int8_static.calibration_rows=0 must be an integer"),
])
def test_bad_method_settings_name_their_key(tiny_run, tmp_path, method, key, value, message):
    with pytest.raises(ConfigError, match=message):
        compression.get(method).write(source_for(tiny_run[0], **{key: value}), tmp_path)
    assert list(tmp_path.iterdir()) == []


def spec_of(arch: str, backend: str = "torch", **model) -> dict:
    return {"backend": backend, "model": {"arch": arch, **model}, "input_shape": [1, 8, 8], "classes": list(range(10))}


def test_which_models_each_method_takes():
    dynamic, static, prune = (compression.get(m) for m in METHODS)
    for module in (dynamic, static, prune):
        assert "torch models only" in module.applies(spec_of("cnn", "tensorflow"))
        assert module.applies(spec_of("cnn")) is None
    assert all(dynamic.applies(spec_of(a)) is None for a in ("mlp", "lstm", "gru", "autoencoder"))
    assert "fast path" in dynamic.applies(spec_of("transformer"))
    assert static.applies(spec_of("mlp")) is None
    assert "LSTM layers in fp32" in static.applies(spec_of("lstm"))
    assert "GRU layers in fp32" in static.applies(spec_of("gru"))
    assert "attention" in static.applies(spec_of("transformer"))
    assert "anomaly scores" in static.applies(spec_of("autoencoder"))
    assert all(prune.applies(spec_of(a)) is None for a in ("mlp", "transformer", "autoencoder"))
    assert "recurrent" in prune.applies(spec_of("lstm"))


def small_trained(arch: str, model: dict, cfg, dest: Path, epochs: int = 4) -> Path:
    """A model of `arch` trained briefly in-process on the tiny run's split, stored as the train stage stores one."""
    import torch

    from maas.backends.torch import api

    x, y = (torch.from_numpy(a) for a in load_split(cfg, "train"))
    torch.manual_seed(0)
    net = api.build({"arch": arch, **model})
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64].long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    dest.mkdir()
    return model_files.write_model_dir(dest, weights=api.get_weights(net.eval()),
                                       spec={**spec_of(arch, **model), "compression": {"method": "none"}})


@pytest.mark.parametrize("arch, model, method", [
    ("lstm", {"hidden": 32}, "int8_dynamic"),
    ("mlp", {"hidden": [64]}, "int8_static"),
])
def test_other_architectures(tiny_run, tmp_path, arch, model, method):
    cfg, _ = tiny_run
    trained = small_trained(arch, model, cfg, tmp_path / "trained")
    spec = model_files.read_spec(trained)
    out = tmp_path / method
    out.mkdir()
    compression.get(method).write(source_for(cfg, spec, model_files.read_weights(trained, spec)), out)
    x, y = load_split(cfg, "val")
    assert accuracy(trained, x, y) > 0.8
    assert abs(accuracy(out, x, y) - accuracy(trained, x, y)) <= 0.02
    predict = model_files.load(out).predictor.predict
    assert np.array_equal(predict(x[:20]).proba, np.concatenate([predict(x[i:i + 1]).proba for i in range(20)]))


def test_autoencoder_keeps_its_anomaly_scores(tiny_run, tmp_path):
    """int8_dynamic quantizes the encoder's and decoder's linears; prune fine-tunes on the joint loss."""
    import torch

    from maas.backends.torch import api

    cfg, _ = tiny_run
    torch.manual_seed(0)
    weights = api.get_weights(api.build({"arch": "autoencoder", "channels": 8, "code": 16}))
    spec = {**spec_of("autoencoder", channels=8, code=16), "compression": {"method": "none"}}
    x = load_split(cfg, "val")[0][:32]
    for method in ("int8_dynamic", "prune"):
        source = source_for(cfg, spec, weights)
        source.train = lambda: tuple(a[:128] for a in load_split(cfg, "train"))
        (tmp_path / method).mkdir()
        compression.get(method).write(source, tmp_path / method)
        anomaly = model_files.load(tmp_path / method).predictor.predict(x).anomaly
        assert anomaly is not None and anomaly.shape == (32,) and np.isfinite(anomaly).all() and anomaly.min() > 0


def test_compress_auto_measures_the_torch_methods(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "compressed", "reports")
    cfg.compress.method = "auto"
    cfg.compress.prune.finetune_epochs = 1
    get("compress").run(cfg)
    report = io.read_json(Path(cfg.paths.reports) / "compression.json")
    rows = {v["method"]: v for v in report["variants"]}
    timing = io.read_json(Path(cfg.paths.reports) / "compression_timing.json")["variants"]
    for method in METHODS:
        assert "skipped" not in rows[method] and "failed" not in rows[method], rows[method]
        assert rows[method]["runtime"] == "torch" and rows[method]["bytes"] < rows["none"]["bytes"] / 3
        assert set(timing[method]["latency"]) == {"batch1", "batch64"}
    assert report["chosen"] in rows
