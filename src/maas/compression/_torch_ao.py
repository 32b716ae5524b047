"""What the torch.ao int8 methods (int8_dynamic, int8_static) share: the engine, quiet calls, the model's layers.

torch 2.13 still ships torch.ao.quantization and its fbgemm/x86 int8 kernels, but
marks the whole stack deprecated (its successor, torchao, is not a maas
dependency). Each call warns at length, once per observer; those warnings are
silenced here, and only here, so the compress stage's log stays readable.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from maas.errors import ArtifactError

ENGINES = ("x86", "fbgemm")  # the server-CPU int8 kernels both methods are calibrated and stored for
_DEPRECATIONS = (
    r"torch\.ao\.quantization is deprecated",
    r"Please use quant_min and quant_max",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation",
)


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message)
        yield


def engine_reason() -> str | None:
    """Why this machine can't run x86/fbgemm int8 kernels (qnnpack alone on ARM, say), or None."""
    import torch

    supported = torch.backends.quantized.supported_engines
    if not any(e in supported for e in ENGINES):
        return f"torch here has no x86/fbgemm int8 engine (only {', '.join(supported)})"
    return None


def use_engine() -> None:
    """Run on the x86 (or fbgemm) engine: the variant's scales and packing were made for it."""
    import torch

    reason = engine_reason()
    if reason:
        raise ArtifactError(f"this int8 model needs the x86/fbgemm quantized engine: {reason}")
    if torch.backends.quantized.engine not in ENGINES:
        supported = torch.backends.quantized.supported_engines
        torch.backends.quantized.engine = next(e for e in ENGINES if e in supported)


def torch_reason(spec: dict[str, Any]) -> str | None:
    if spec.get("backend") != "torch":
        return f"torch models only; this is a {spec.get('backend')} model"
    return engine_reason()


def build(spec: dict[str, Any]):
    """The architecture model.yaml names, with initial weights that are never used (enough to see its layers)."""
    import torch

    from maas import backends

    with torch.random.fork_rng(devices=[]):  # random init must not move the process's generator
        return backends.get("torch").build(spec.get("model"))


def arch(spec: dict[str, Any]) -> str:
    return str((spec.get("model") or {}).get("arch"))
