"""tflite_dynamic: a Keras model as a TFLite flatbuffer with dynamic-range quantization, run by LiteRT.

Weights are int8 with one scale per output channel (the converter leaves
tensors under 1024 values in float32, such as the cnn's first 3x3x1 kernel),
~4x smaller than fp32; activations stay float between layers and are quantized to
int8 at run time for the int8 matrix products. That scale is taken per row
(per image, for each time step of an RNN), so an image's answer does not depend
on its batch-mates: the variant runs in blocks of BLOCK_ROWS like every other,
and tests/unit/test_compression_tflite.py checks the answers bit for bit.
Every Keras family converts. TensorFlow is needed to write it, only LiteRT to
load and serve it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maas.compression import _tflite_convert
from maas.compression._litert_runtime import load  # noqa: F401  (the method's load: LiteRT alone)

METHOD = "tflite_dynamic"


def applies(spec: dict[str, Any]) -> str | None:
    return _tflite_convert.not_applicable(spec, METHOD, _tflite_convert.DYNAMIC)


def write(source, out: Path) -> None:
    _tflite_convert.write(source, out, METHOD, _tflite_convert.DYNAMIC)
