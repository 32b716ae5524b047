"""A model directory is data: nothing in model.yaml or beside it can choose code to run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import yaml

from maas.backends.torch.api import get_weights
from maas.errors import ArtifactError, ConfigError
from maas.model_files import MODEL_FILE, load, write_model_dir
from maas.models import build_model

TINY = {"arch": "cnn", "in_channels": 1, "image_size": 8, "channels": 2, "hidden": 4, "num_classes": 10}


class MakeDir:
    """Unpickling this creates a folder: proof that the pickle's payload ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    model = build_model(TINY)
    out = tmp_path / "model"
    out.mkdir()
    return write_model_dir(out, weights=get_weights(model), spec={"backend": "torch", "model": TINY,
                                                                   "input_shape": [1, 8, 8]})


def edit_spec(directory: Path, **changes) -> None:
    spec = yaml.safe_load((directory / MODEL_FILE).read_text())
    spec.update(changes)
    (directory / MODEL_FILE).write_text(yaml.safe_dump(spec))


def test_a_model_dir_round_trips(model_dir):
    import numpy as np

    loaded = load(model_dir)
    assert loaded.spec["model"]["arch"] == "cnn" and type(loaded.model).__name__ == "CNN"
    assert loaded.model.features[0].out_channels == 2
    proba = loaded.predictor.predict(np.zeros((3, 1, 8, 8), np.float32)).proba
    assert proba.shape == (3, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_the_pickle_in_model_yaml_from_the_issue_never_runs(model_dir, tmp_path):
    """The exact attack: `_target_` under maas.models reaches torch.load, which unpickles a payload."""
    marker = tmp_path / "payload-ran"
    (model_dir / "payload.pkl").write_bytes(pickle.dumps(MakeDir(marker)))
    edit_spec(model_dir, model={"_target_": "maas.models.torch.cnn.torch.load",
                                "_args_": [str(model_dir / "payload.pkl")], "weights_only": False})
    with pytest.raises(ArtifactError, match="_target_"):
        load(model_dir)
    assert not marker.exists()


@pytest.mark.parametrize("model, named", [
    ({**TINY, "_target_": "maas.models.torch.cnn.CNN"}, "_target_"),
    ({**TINY, "arch": "maas.models.torch.cnn.CNN"}, "not a torch architecture"),
    ({**TINY, "arch": "cnnn"}, "did you mean 'cnn'"),
    ({**TINY, "chanels": 3}, "model.chanels is not an argument of arch=cnn; did you mean 'channels'"),
    ({**TINY, "arch": "${oc.env:HOME}"}, r"\$\{oc.env:HOME\}"),  # read as text, never interpolated
    ("cnn", "must be a mapping"),
])
def test_model_yaml_names_only_known_architectures_and_arguments(model_dir, model, named):
    edit_spec(model_dir, model=model)
    with pytest.raises(ArtifactError, match=named):
        load(model_dir)


@pytest.mark.parametrize("weights", ["../model/weights.safetensors", "/etc/passwd", ".."])
def test_weights_must_be_a_file_in_the_model_dir(model_dir, weights):
    edit_spec(model_dir, weights=weights)
    with pytest.raises(ArtifactError, match="must be a file name inside"):
        load(model_dir)


def test_weights_are_checked_against_their_sha256_before_loading(model_dir):
    weights = model_dir / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a float: safetensors itself would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load(model_dir)


def test_other_backends_and_bad_yaml_are_named(model_dir):
    edit_spec(model_dir, backend="jax")
    with pytest.raises(ArtifactError, match="'jax' model; backends are: torch, tensorflow"):
        load(model_dir)
    (model_dir / MODEL_FILE).write_text("model: [unclosed\n")
    with pytest.raises(ArtifactError, match="not valid YAML"):
        load(model_dir)


def test_the_config_builds_by_name_and_refuses_targets():
    from maas.config import compose

    assert type(build_model(compose(["model=mlp"]).model)).__name__ == "MLP"
    with pytest.raises(ConfigError, match="_target_"):
        build_model({"_target_": "os.system", "arch": "cnn"})


def test_weights_that_dont_fit_the_architecture_are_named(model_dir):
    edit_spec(model_dir, model={**TINY, "channels": 3})
    with pytest.raises(ArtifactError, match="don't fit the architecture"):
        load(model_dir)


@pytest.mark.parametrize("axis", [0, -1])  # torch keeps output channels first, Keras last
def test_int8_storage_round_trips_within_half_a_step_per_channel(axis):
    import numpy as np

    from maas.compression.int8_weights import dequantize, quantize

    rng = np.random.default_rng(0)
    w = {"kernel": rng.normal(size=(6, 3, 3, 5)).astype(np.float32), "bias": rng.normal(size=5).astype(np.float32)}
    stored = quantize(w, axis)
    assert stored["kernel.__int8"].dtype == np.int8 and "bias" in stored
    back = dequantize(stored)
    step = np.abs(np.moveaxis(w["kernel"], axis, 0)).reshape(w["kernel"].shape[axis], -1).max(1) / 127
    err = np.abs(np.moveaxis(back["kernel"] - w["kernel"], axis, 0)).reshape(len(step), -1).max(1)
    assert (err <= step / 2 + 1e-6).all() and np.array_equal(back["bias"], w["bias"])
