"""tflite_int8: a Keras model as a fully int8 TFLite flatbuffer, run by LiteRT.

Weights and activations are int8 with fixed scales, observed on the first
compress.tflite_int8.calibration_rows validation rows (never test). The
converter is asked for int8 kernels only; the input and output stay float32
(the quantize/dequantize at the ends cost microseconds), and the rare op it
can't quantize runs in float32 between a dequantize and a quantize (the
transformer's layer norms each keep one NEG). Fixed scales make an
image's answer independent of its batch-mates. LSTM and GRU don't apply (the
converter crashes calibrating them; see _tflite_convert). TensorFlow is needed to
write it, only LiteRT to load and serve it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maas.compression import _tflite_convert
from maas.compression._litert_runtime import load  # noqa: F401  (the method's load: LiteRT alone)

METHOD = "tflite_int8"


def applies(spec: dict[str, Any]) -> str | None:
    return _tflite_convert.not_applicable(spec, METHOD, _tflite_convert.INT8)


def write(source, out: Path) -> None:
    _tflite_convert.write(source, out, METHOD, _tflite_convert.INT8)
