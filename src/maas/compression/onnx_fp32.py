"""onnx_fp32: the torch model exported to ONNX and run by ONNX Runtime in fp32, so the Bento needs no torch.

Same weights and answers as the torch model (to float rounding), a smaller runtime
(onnxruntime imports in a fraction of torch's time) and ONNX Runtime's fused CPU
kernels. The stored file is the graph itself, model.onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maas import model_files
from maas.compression import _onnx_export, _onnx_runtime

FILE = "model.onnx"


def applies(spec: dict[str, Any]) -> str | None:
    return _onnx_export.applies(spec)


def write(source, out: Path) -> None:
    data, names = _onnx_export.export(source)
    _onnx_export.write_variant(out, source, data, names, FILE, {"method": "onnx_fp32"})


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    return _onnx_runtime.load(directory, spec)
