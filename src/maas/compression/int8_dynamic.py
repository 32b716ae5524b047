"""Int8 weights with one symmetric scale per output channel, int8 activations at run time.

Storage: every floating weight of rank >= 2 (conv kernels, dense matrices) is
kept as int8 plus a float32 scale per output channel; biases and norm
statistics stay float32. That is ~4x smaller and needs no pickle (torch's own
quantized modules only serialise through pickle).

Run time: weights are dequantized into the fp32 architecture, then Linear
layers are swapped for torch's dynamic-int8 kernels (activations quantized
per batch) on CPU. Convolutions stay fp32 there: dynamic quantization has no
conv kernels.
"""

from __future__ import annotations

import warnings

import torch

Q_SUFFIX = ".__int8"
SCALE_SUFFIX = ".__scale"


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if t.is_floating_point() and t.dim() >= 2:
            flat = t.detach().float().reshape(t.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            out[name + Q_SUFFIX] = q.reshape(t.shape)
            out[name + SCALE_SUFFIX] = scale.float()
        else:
            out[name] = t
    return out


def dequantize_state(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if name.endswith(Q_SUFFIX):
            base = name[: -len(Q_SUFFIX)]
            scale = stored[base + SCALE_SUFFIX]
            shape = (-1,) + (1,) * (t.dim() - 1)
            out[base] = t.float() * scale.reshape(shape)
        else:
            out[name] = t
    return out


def dynamic_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Swap Linear layers for dynamic-int8 ones (CPU inference only)."""
    with warnings.catch_warnings():
        # torch.ao.quantization warns it will move to torchao; it is the API this torch ships.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
