"""Compression methods by name: each turns an fp32 model into stored tensors and back."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from maas.errors import ConfigError

METHODS = ("none", "int8_dynamic")


def compress_state(model: torch.nn.Module, method: str) -> dict[str, torch.Tensor]:
    """The tensors to store for `model` compressed with `method`."""
    if method == "none":
        return dict(model.state_dict())
    if method == "int8_dynamic":
        from maas.compression import int8_dynamic

        return int8_dynamic.quantize_state(model.state_dict())
    raise ConfigError(f"compress.method={method!r} is not allowed; choose one of {list(METHODS)}")


def load_compressed_state(model: torch.nn.Module, weights: Path, method: str) -> torch.nn.Module:
    """Load stored compressed tensors into a freshly built fp32 `model`; return the runnable model."""
    state = load_file(str(weights))
    if method == "int8_dynamic":
        from maas.compression import int8_dynamic

        model.load_state_dict(int8_dynamic.dequantize_state(state))
        model.eval()
        return int8_dynamic.dynamic_linear(model)
    raise ConfigError(f"compression method {method!r} is not known; choose one of {list(METHODS)}")
