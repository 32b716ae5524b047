"""int8_weights: int8 weights with one symmetric scale per output channel (weight-only quantization).

Storage: every floating weight of rank >= 2 (conv kernels, dense matrices) is
kept as int8 plus a float32 scale per output channel; biases and norm
statistics stay float32. That is ~4x smaller and needs no pickle (torch's own
quantized modules only serialise through pickle). The output channel is the
first axis in torch's layouts and the last in Keras's; `channel_axis` says which.

Run time (every backend): the weights are dequantized into the fp32
architecture, so it is ~4x smaller on disk and in transit, not faster. (The
int8 kernels are int8_dynamic, int8_static, onnx_int8 and the TFLite methods.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files

Q_SUFFIX = ".__int8"
SCALE_SUFFIX = ".__scale"


def quantize(weights: dict[str, np.ndarray], channel_axis: int = 0) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        if np.issubdtype(w.dtype, np.floating) and w.ndim >= 2:
            moved = np.moveaxis(w.astype(np.float32), channel_axis, 0)
            flat = moved.reshape(len(moved), -1)
            scale = np.maximum(np.abs(flat).max(axis=1), 1e-12) / 127.0
            q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8)
            out[name + Q_SUFFIX] = np.moveaxis(q.reshape(moved.shape), 0, channel_axis)
            out[name + SCALE_SUFFIX] = scale.astype(np.float32)
        else:
            out[name] = w
    # Which axis holds the output channel travels with the arrays, so dequantize needs no config.
    out["__int8_channel_axis"] = np.array([channel_axis], np.int64)
    return out


def dequantize(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    axis = int(stored.get("__int8_channel_axis", np.zeros(1, np.int64)).reshape(-1)[0])
    out: dict[str, np.ndarray] = {}
    for name, t in stored.items():
        if name.endswith(SCALE_SUFFIX) or name == "__int8_channel_axis":
            continue
        if name.endswith(Q_SUFFIX):
            base = name[: -len(Q_SUFFIX)]
            shape = [1] * t.ndim
            shape[axis] = -1
            out[base] = t.astype(np.float32) * stored[base + SCALE_SUFFIX].reshape(shape)
        else:
            out[name] = t
    return out


def applies(spec: dict[str, Any]) -> str | None:
    return None


def write(source, out: Path, method: str = "int8_weights") -> None:
    from maas import backends

    axis = backends.get(source.spec["backend"]).OUTPUT_CHANNEL_AXIS
    model_files.write_model_dir(out, weights=quantize(source.weights, axis), weights_file=f"weights.{method}.safetensors",
                                spec={**source.spec, "compression": {"method": method}})


def fp32_weights(directory: Path, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    return dequantize(model_files.read_weights(directory, spec))


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    return model_files.load_in_backend(directory, spec, fp32_weights(directory, spec))
