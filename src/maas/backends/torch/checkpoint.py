"""A trained model on disk: weights.safetensors + model.yaml, never a pickle.

model.yaml holds the architecture's config (its name in maas's table and the
constructor's arguments, rebuilt with `build_model`), the input shape and
classes the model expects, how the weights are stored with their sha256, and
the run that produced them, so a checkpoint describes itself. A model
directory is data: it is read with a plain YAML parser (no interpolation), and
the weights' hash is checked before they are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from maas import io
from maas.errors import ArtifactError, ConfigError
from maas.models import build_model

FORMAT = "maas.model/1"
MODEL_FILE = "model.yaml"


def save_state(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    with io.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


def write_model_dir(directory: Path, *, state: dict[str, torch.Tensor], spec: dict[str, Any],
                    weights_file: str = "weights.safetensors") -> Path:
    """Write weights and model.yaml into `directory` (already a temp dir of `io.atomic_dir`)."""
    save_state(directory / weights_file, state, {"format": FORMAT})
    spec = {**spec, "format": FORMAT, "backend": "torch", "weights": weights_file,
            "weights_sha256": io.file_sha256(directory / weights_file)}
    io.write_text(directory / MODEL_FILE, yaml.safe_dump(spec, sort_keys=False))
    return directory


def read_spec(directory: str | Path) -> dict[str, Any]:
    """model.yaml as plain data, after checking that it is one and names its files plainly."""
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
    if spec.get("backend") != "torch":
        raise ArtifactError(f"{path} is a {spec.get('backend')!r} model; this loader reads torch models")
    return spec


def verified_weights(directory: Path, spec: dict[str, Any]) -> Path:
    """The weights file, once its sha256 matches the one model.yaml records."""
    weights = io.require(directory / spec["weights"], "weights")
    actual = io.file_sha256(weights)
    if actual != spec["weights_sha256"]:
        raise ArtifactError(f"{weights} has sha256 {actual}, but {MODEL_FILE} records "
                            f"{spec['weights_sha256']}: the file is corrupt or was replaced")
    return weights


def build_from_spec(directory: Path, spec: dict[str, Any]) -> torch.nn.Module:
    """The architecture model.yaml names, by name from maas's table, with fresh weights."""
    try:
        return build_model(spec.get("model"), backend=spec["backend"])
    except ConfigError as e:
        raise ArtifactError(f"{directory / MODEL_FILE}: {e}") from None


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the architecture from model.yaml and load its weights, ready for inference."""
    from maas.compression import load_compressed_state

    directory = Path(directory)
    spec = read_spec(directory)
    model = build_from_spec(directory, spec)
    weights = verified_weights(directory, spec)
    method = spec.get("compression", {}).get("method", "none")
    if method == "none":
        state = load_file(str(weights))
        model.load_state_dict(state)
        model.eval()
    else:
        model = load_compressed_state(model, weights, method)
    return model.to(device), spec
