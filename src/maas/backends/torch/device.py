"""Device and mixed-precision choice, the only place that knows about CUDA."""

from __future__ import annotations

import contextlib

import torch

from maas.errors import ConfigError

from maas.backends.base import PRECISIONS


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple MPS, then CPU; an explicit device must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ConfigError(f"trainer.device={requested!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={requested} but only {torch.cuda.device_count()} CUDA devices exist")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for `precision` on `device` (a no-op for full precision)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not allowed; choose one of {list(PRECISIONS)}")
    if precision == "32":
        return contextlib.nullcontext()
    if precision == "16-mixed" and device.type != "cuda":
        raise ConfigError("trainer.precision=16-mixed needs CUDA; use bf16-mixed on CPU")
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> "torch.amp.GradScaler":
    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
    return torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
