"""int8_dynamic: torch dynamic int8 (torch.ao quantize_dynamic) of the Linear, LSTM and GRU layers.

Storage: the int8_weights format (int8 + one float32 scale per output channel,
safetensors), because torch's own dynamic-quantized modules serialise only
through pickle. Load: the fp32 architecture gets the dequantized weights and
quantize_dynamic turns its Linear/LSTM/GRU layers into int8 ones with a
symmetric per-channel weight observer limited to [-127, 127], as int8_weights
is: its scale is then the stored one and it re-quantizes each dequantized q*s
back to q, so the int8 weights that run are exactly the ones stored. (torch's
default range, [-128, 127], would turn every -127 into -128 with a scale
127/127.5 of the stored one.)

Activations are quantized at run time with a scale from each tensor's own
range, so a row's answer would depend on the rows batched with it: the
predictor runs one row at a time (backends.base explains the blocks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.compression import _torch_ao
from maas.compression.int8_weights import dequantize, quantize
from maas.errors import ArtifactError

ROWS = 1


def _layer_types():
    from torch import nn

    return (nn.Linear, nn.LSTM, nn.GRU)


def applies(spec: dict[str, Any]) -> str | None:
    reason = _torch_ao.torch_reason(spec)
    if reason:
        return reason
    if _torch_ao.arch(spec) == "transformer":
        # Checked: quantize_dynamic runs, then the first forward fails with AttributeError.
        return ("torch's TransformerEncoderLayer fast path reads linear1.weight as a tensor, which a "
                "dynamic int8 Linear replaces with a method")
    if not any(isinstance(m, _layer_types()) for m in _torch_ao.build(spec).modules()):
        return "the model has no Linear, LSTM or GRU layer to quantize"
    return None


def write(source, out: Path) -> None:
    from maas.backends.torch.api import OUTPUT_CHANNEL_AXIS

    model_files.write_model_dir(out, weights=quantize(source.weights, OUTPUT_CHANNEL_AXIS),
                                weights_file="weights.int8_dynamic.safetensors",
                                spec={**source.spec, "compression": {"method": "int8_dynamic", "engine": "x86",
                                                                     "rows_per_call": ROWS}})


def fp32_weights(directory: Path, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    return dequantize(model_files.read_weights(directory, spec))


def quantized(model):
    """`model` (fp32, eval) with its Linear/LSTM/GRU layers swapped for dynamic int8 ones (a copy)."""
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver, QConfig, default_dynamic_quant_observer, quantize_dynamic

    _torch_ao.use_engine()
    qconfig = QConfig(activation=default_dynamic_quant_observer,
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                                quant_min=-127, quant_max=127))
    with _torch_ao.quiet():
        return quantize_dynamic(model.eval(), {t: qconfig for t in _layer_types()}, dtype=torch.qint8)


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    if spec.get("backend") != "torch":
        raise ArtifactError(f"{directory}: int8_dynamic models are torch models; model.yaml says "
                            f"backend {spec.get('backend')!r}")
    backend, model = model_files.build_in_backend(directory, spec, fp32_weights(directory, spec))
    model = quantized(model)
    return model_files.LoadedModel(backend.predictor(model, rows=ROWS), model, spec)
