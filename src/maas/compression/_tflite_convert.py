"""A Keras model -> a TFLite flatbuffer run by LiteRT: what tflite_dynamic and tflite_int8 share.

The architecture is rebuilt from model.yaml and the stored weights, wrapped in
a tf.function of one fixed input shape, (BLOCK_ROWS, C, H, W) float32 NCHW (the
Keras families transpose inside), and converted by tf.lite.TFLiteConverter
(TensorFlow 2.21 still ships it undeprecated; only its tf.lite.Interpreter is
deprecated, for ai_edge_litert's, which is what loads the result). The graph
returns the logits and, for a model that reconstructs, the reconstruction;
`_litert_runtime` turns them into probabilities and anomaly scores.

Importing this module is cheap: TensorFlow is imported when a model is converted.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from maas import io, model_files
from maas.backends.base import BLOCK_ROWS
from maas.compression._litert_runtime import ARTIFACT, LOGITS, RECONSTRUCTION
from maas.errors import ConfigError

DYNAMIC, INT8 = "dynamic", "int8"
# Calibrating a full-int8 Keras 3 LSTM or GRU (a WHILE loop in TFLite, not its fused sequence
# op) segfaults TensorFlow 2.21's calibrator, taking the whole compress stage with it
# (tensorflow/tensorflow#41305 reported the same on 2.4). Dynamic-range conversion works.
INT8_CRASHES = ("lstm", "gru")


def not_applicable(spec: dict[str, Any], method: str, quantize: str) -> str | None:
    """Why `method` can't convert the model this model.yaml describes, or None."""
    if spec.get("backend") != "tensorflow":
        return (f"{method} converts Keras models and this one was trained with the {spec.get('backend')} backend "
                f"(trainer.backend=tensorflow to use it)")
    if len(spec.get("input_shape") or ()) != 3:
        return f"{method} exports (N, C, H, W) image inputs; this model's input_shape is {spec.get('input_shape')}"
    arch = (spec.get("model") or {}).get("arch")
    if quantize == INT8 and arch in INT8_CRASHES:
        return (f"TensorFlow 2.21's full-int8 calibration crashes (segfault) on Keras's {arch.upper()} loop; "
                f"tflite_dynamic converts it")
    return None


def calibration_blocks(x: np.ndarray | None, rows: Any) -> np.ndarray:
    """The first `rows` calibration rows as (blocks, BLOCK_ROWS, C, H, W); a short last block is
    filled from the start, not with zeros, so padding doesn't move the observed ranges."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"compress.tflite_int8.calibration_rows={rows!r} must be an integer >= 1")
    if x is None or len(x) == 0:
        raise ConfigError("tflite_int8 needs calibration rows (the validation split) and got none")
    x = np.ascontiguousarray(x[:rows], dtype=np.float32)
    n = -(-len(x) // BLOCK_ROWS) * BLOCK_ROWS
    return x[np.arange(n) % len(x)].reshape(-1, BLOCK_ROWS, *x.shape[1:])


def convert(source, quantize: str, calibration: np.ndarray | None = None) -> tuple[bytes, list[str]]:
    """(flatbuffer, its output names) for the model in `source`, dynamic-range or full-int8 quantized."""
    # The backend first: it sets the environment TensorFlow reads when it loads.
    _, model = model_files.build_in_backend(Path("<trained model>"), source.spec, source.weights)
    import tensorflow as tf

    reconstructs = hasattr(model, "reconstruct")
    outputs = [LOGITS, RECONSTRUCTION] if reconstructs else [LOGITS]

    @tf.function(input_signature=[tf.TensorSpec((BLOCK_ROWS, *source.spec["input_shape"]), tf.float32)])
    def forward(x):
        logits = tf.cast(model(x, training=False), tf.float32)
        return (logits, tf.cast(model.reconstruct(x), tf.float32)) if reconstructs else logits

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], model)
    # Lowering through a SavedModel (the default) loses Keras 3's variables: the flatbuffer keeps
    # VAR_HANDLE/READ_VARIABLE ops with no values (600 kB of weights became a 10 kB file). Freezing the
    # concrete function instead makes the weights constants, which is what the quantizer works on.
    converter.experimental_lower_to_saved_model = False
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == INT8:
        converter.representative_dataset = lambda: ([block] for block in calibration)
        # int8 kernels wherever the converter has one (it brackets the rare other op, the transformer's
        # NEG, with dequantize/quantize). Input and output stay float32: the quantize/dequantize at the
        # ends cost microseconds, and the runtime keeps one contract for both methods.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():
        # Float input/output is chosen, not forgotten: the converter warns that it found no input statistics.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        data = converter.convert()
    return data, outputs


def write(source, out: Path, method: str, quantize: str) -> None:
    """Convert, write `model.tflite` and its model.yaml (runtime litert) into `out`."""
    extra: dict[str, Any] = {}
    calibration = None
    if quantize == INT8:
        rows = source.options(method).get("calibration_rows")
        calibration = calibration_blocks(source.calibration, rows)
        extra["calibration_rows"] = min(rows, len(source.calibration))
    data, outputs = convert(source, quantize, calibration)
    io.write_bytes(out / ARTIFACT, data)
    model_files.write_artifact_dir(out, artifact=ARTIFACT, spec={
        **source.spec, "runtime": "litert", "compression": {"method": method, "outputs": outputs, **extra}})
