"""A trained model on disk: weights.safetensors + model.yaml, never a pickle.

model.yaml holds the architecture's config (rebuilt with `build_model`), the
input shape and classes the model expects, how the weights are stored, and
the run that produced them, so a checkpoint describes itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from maas import io
from maas.errors import ArtifactError
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
    spec = {**spec, "format": FORMAT, "backend": "torch", "weights": weights_file}
    io.write_text(directory / MODEL_FILE, OmegaConf.to_yaml(OmegaConf.create(spec)))
    return directory


def read_spec(directory: str | Path) -> dict[str, Any]:
    path = io.require(Path(directory) / MODEL_FILE, "model.yaml")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a maas model file (format {FORMAT})")
    return spec


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the architecture from model.yaml and load its weights, ready for inference."""
    from maas.compression import load_compressed_state

    directory = Path(directory)
    spec = read_spec(directory)
    model = build_model(spec["model"])
    weights = io.require(directory / spec["weights"], "weights")
    method = spec.get("compression", {}).get("method", "none")
    if method == "none":
        state = load_file(str(weights))
        model.load_state_dict(state)
        model.eval()
    else:
        model = load_compressed_state(model, weights, method)
    return model.to(device), spec
