"""Compression methods by name: each turns stored fp32 arrays into smaller ones and back.

Storage is backend-neutral (numpy arrays in safetensors); a backend may also
speed up the restored model at run time (torch swaps in dynamic-int8 Linear
layers), which its `predictor` does.
"""

from __future__ import annotations

import numpy as np

from maas.errors import ConfigError

METHODS = ("none", "int8_dynamic")


def _check(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"compression method {method!r} is not known; choose one of {list(METHODS)}")


def compress(weights: dict[str, np.ndarray], method: str, channel_axis: int = 0) -> dict[str, np.ndarray]:
    """The arrays to store for fp32 `weights` compressed with `method`; `channel_axis` is the
    backend's output-channel axis of a kernel (0 in torch, -1 in Keras)."""
    _check(method)
    if method == "int8_dynamic":
        from maas.compression import int8_dynamic

        return int8_dynamic.quantize(weights, channel_axis)
    return dict(weights)


def decompress(stored: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """fp32 arrays for the architecture, from what `compress` stored."""
    _check(method)
    if method == "int8_dynamic":
        from maas.compression import int8_dynamic

        return int8_dynamic.dequantize(stored)
    return dict(stored)
