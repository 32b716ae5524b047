"""A model on disk: weights.safetensors + model.yaml, never a pickle, for every backend.

model.yaml holds the architecture (its name in maas's table and the
constructor's arguments), the backend, the input shape and classes the model
expects, how the weights are stored with their sha256, and the run that
produced them, so a model directory describes itself. It is data: read with a
plain YAML parser (no interpolation), the backend and architecture looked up
by name in maas's own tables, and the weights' hash checked before they are
read. Weights are numpy arrays by name, so compression and checks are shared
by every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from maas import io
from maas.errors import ArtifactError, ConfigError

FORMAT = "maas.model/1"
MODEL_FILE = "model.yaml"
WEIGHTS_FILE = "weights.safetensors"
RUNTIMES = ("torch", "tensorflow", "onnxruntime", "litert")  # what can run a stored model


def write_model_dir(directory: Path, *, weights: dict[str, np.ndarray], spec: dict[str, Any],
                    weights_file: str = WEIGHTS_FILE) -> Path:
    """Write the weights and model.yaml into `directory` (already a temp dir of `io.atomic_dir`)."""
    from safetensors.numpy import save_file

    if not spec.get("backend"):
        raise ValueError("spec must name its backend")
    with io.atomic_path(directory / weights_file) as tmp:
        # np.require, not ascontiguousarray: that turns a 0-d array (BatchNorm's step count) into shape [1].
        save_file({k: np.require(v, requirements="C") for k, v in weights.items()}, str(tmp),
                  metadata={"format": FORMAT})
    sha = io.file_sha256(directory / weights_file)
    spec = {**spec, "format": FORMAT, "weights": weights_file, "weights_sha256": sha,
            "trained_sha256": _trained_sha256(spec, sha)}
    io.write_text(directory / MODEL_FILE, yaml.safe_dump(spec, sort_keys=False))
    return directory


def read_spec(directory: str | Path) -> dict[str, Any]:
    """model.yaml as plain data, after checking that it is one and names its files plainly."""
    from maas.backends import BACKENDS

    path = io.require(Path(directory) / MODEL_FILE, "model.yaml")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a maas model file (format {FORMAT})")
    weights = spec.get("weights")
    # A bare file name: model.yaml may only point inside its own directory.
    if not isinstance(weights, str) or Path(weights).name != weights or weights in (".", ".."):
        raise ArtifactError(f"{path}: weights={weights!r} must be a file name inside {Path(directory)}")
    if not isinstance(spec.get("weights_sha256"), str):
        raise ArtifactError(f"{path} records no weights_sha256: rebuild the model with this version of maas")
    if spec.get("backend") not in BACKENDS:
        raise ArtifactError(f"{path} is a {spec.get('backend')!r} model; backends are: {', '.join(BACKENDS)}")
    if spec.get("runtime", spec["backend"]) not in RUNTIMES:
        raise ArtifactError(f"{path} names runtime {spec.get('runtime')!r}; runtimes are: {', '.join(RUNTIMES)}")
    return spec


def read_weights(directory: str | Path, spec: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The stored arrays, once their file's sha256 matches the one model.yaml records and every
    float in them is finite."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    spec = spec or read_spec(directory)
    path = io.require(directory / spec["weights"], "weights")
    actual = io.file_sha256(path)
    if actual != spec["weights_sha256"]:
        raise ArtifactError(f"{path} has sha256 {actual}, but {MODEL_FILE} records "
                            f"{spec['weights_sha256']}: the file is corrupt or was replaced")
    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a malformed header
        raise ArtifactError(f"{path} is not a readable safetensors file: {e}") from e
    check_finite(weights, path)
    return weights


def check_finite(weights: dict[str, np.ndarray], path: Path) -> None:
    """Refuse NaN or inf in any float tensor: such a model answers garbage (or NaN) for every input,
    and a matching sha256 only says the file is the one recorded, not that it holds a usable model."""
    for name, array in weights.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise ArtifactError(f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf) of "
                                f"{array.size}, so the model cannot answer usefully: retrain it or restore the file")


def _trained_sha256(source_spec: dict[str, Any], own: str) -> str:
    """The trained weights a model descends from: kept through compression, so the packaged variant still
    names the model evaluate scored (the champion gate knows it); a trained model is its own."""
    return source_spec.get("trained_sha256") or source_spec.get("weights_sha256") or own


def compression_method(spec: dict[str, Any]) -> str:
    return (spec.get("compression") or {}).get("method", "none")


def runtime(spec: dict[str, Any]) -> str:
    """What runs the stored model: its training backend, or ONNX Runtime / LiteRT for exported variants."""
    return spec.get("runtime") or spec["backend"]


def write_artifact_dir(directory: Path, *, artifact: str, spec: dict[str, Any]) -> Path:
    """Describe an artifact a method already wrote into `directory` (an ONNX graph, a TFLite
    flatbuffer): model.yaml with its name and sha256, so it is checked like any weights file."""
    path = io.require(directory / artifact, "model artifact")
    sha = io.file_sha256(path)
    spec = {**spec, "format": FORMAT, "weights": artifact, "weights_sha256": sha,
            "trained_sha256": _trained_sha256(spec, sha)}
    io.write_text(directory / MODEL_FILE, yaml.safe_dump(spec, sort_keys=False))
    return directory


def read_artifact(directory: str | Path, spec: dict[str, Any]) -> bytes:
    """The artifact's bytes, once their sha256 matches model.yaml's: the runtime is handed these
    bytes, never the path, so what is checked is what runs."""
    import hashlib

    path = io.require(Path(directory) / spec["weights"], "model artifact")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec["weights_sha256"]:
        raise ArtifactError(f"{path} has sha256 {actual}, but {MODEL_FILE} records "
                            f"{spec['weights_sha256']}: the file is corrupt or was replaced")
    return data


@dataclass
class LoadedModel:
    predictor: Any   # maas.backends.base.Predictor
    model: Any       # what runs: the backend's model, an ONNX Runtime session or a LiteRT interpreter
    spec: dict[str, Any]


def load(directory: str | Path) -> LoadedModel:
    """The stored model ready to predict, loaded by the compression method its model.yaml records
    (a name from maas's own table), exactly as the Bento loads it."""
    from maas import compression

    directory = Path(directory)
    spec = read_spec(directory)
    return compression.from_spec(spec).load(directory, spec)


def build_in_backend(directory: Path, spec: dict[str, Any], weights: dict[str, np.ndarray]):
    """(backend module, model): the architecture model.yaml names, in its training backend, holding `weights`."""
    from maas import backends

    backend = backends.get(spec["backend"])
    try:
        model = backend.build(spec.get("model"))
    except ConfigError as e:
        raise ArtifactError(f"{directory / MODEL_FILE}: {e}") from None
    backend.set_weights(model, weights)
    return backend, model


def load_in_backend(directory: Path, spec: dict[str, Any], weights: dict[str, np.ndarray]) -> LoadedModel:
    """A model whose fp32 `weights` run in its training backend's own architecture."""
    backend, model = build_in_backend(directory, spec, weights)
    return LoadedModel(backend.predictor(model), model, spec)


def read_init_weights(source: str, backend: str) -> dict[str, np.ndarray]:
    """fp32 arrays to start training from (`model.init_from`): a maas model directory of the same
    backend, or a bare safetensors file. The caller checks names and shapes against its model."""
    from safetensors.numpy import load_file

    from maas import compression

    path = Path(source)
    if (path / MODEL_FILE).exists():
        spec = read_spec(path)
        if spec["backend"] != backend:
            raise ConfigError(f"model.init_from={source} is a {spec['backend']} model; "
                              f"trainer.backend={backend} starts only from {backend} weights")
        fp32 = getattr(compression.from_spec(spec), "fp32_weights", None)
        if fp32 is None:
            raise ConfigError(f"model.init_from={source} is stored as {compression_method(spec)}, which keeps no "
                              f"{backend} weights; start from the trained model directory instead")
        return fp32(path, spec)
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors' own error types
            raise ConfigError(f"model.init_from={source}: not a safetensors file ({e})") from None
    raise ConfigError(f"model.init_from={source}: no maas model directory or safetensors file there")
