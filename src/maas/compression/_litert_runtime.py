"""LiteRT (ai-edge-litert, the TFLite runtime) running a flatbuffer the TFLite methods wrote.

Loading and predicting import LiteRT alone, never TensorFlow, so a Bento serving
a TFLite variant needs neither TensorFlow nor Keras.

The flatbuffer's contract (`_tflite_convert` writes it, `load` checks it):
one float32 input of shape (BLOCK_ROWS, C, H, W), NCHW as maas feeds every
model, and float32 outputs: the logits (BLOCK_ROWS, classes) and, for a model
that reconstructs, its reconstruction (BLOCK_ROWS, C, H, W). Softmax and the
anomaly score are computed here in float32, not in the graph: in a full-int8
graph the softmax output is int8 with scale 1/256, so probabilities would move
in steps of 0.004 and rows would not sum to 1, and the anomaly score would be
clipped to the largest reconstruction error seen in calibration, the very
images it exists to flag. `compression.outputs` in model.yaml says which
outputs the graph has.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.compression import runtime_threads
from maas.backends.base import BLOCK_ROWS, Prediction, predict_in_blocks
from maas.errors import ArtifactError

ARTIFACT = "model.tflite"
LOGITS, RECONSTRUCTION = "logits", "reconstruction"


def expected_outputs(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Output name -> the shape maas exports it with, for this model.yaml."""
    outputs = (spec.get("compression") or {}).get("outputs") or [LOGITS]
    if outputs not in ([LOGITS], [LOGITS, RECONSTRUCTION]):
        raise ArtifactError(f"model.yaml: compression.outputs={outputs!r} must be [{LOGITS}] or "
                            f"[{LOGITS}, {RECONSTRUCTION}]")
    classes = spec.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ArtifactError(f"model.yaml: classes={classes!r} must list the classes the model's logits stand for")
    shapes = {LOGITS: (BLOCK_ROWS, len(classes))}
    if RECONSTRUCTION in outputs:
        shapes[RECONSTRUCTION] = (BLOCK_ROWS, *spec["input_shape"])
    return shapes


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class LiteRTPredictor:
    """Probabilities (and anomaly scores) for NCHW float32 batches, in blocks of the graph's fixed shape."""

    def __init__(self, interpreter, input_index: int, output_index: dict[str, int]):
        self.interpreter = interpreter
        self._input = input_index
        self._logits = output_index[LOGITS]
        self._recon = output_index.get(RECONSTRUCTION)
        self.scores_anomalies = self._recon is not None
        # An interpreter holds one set of tensors: two threads predicting at once would mix their blocks.
        self._lock = threading.Lock()

    def _forward(self, block: np.ndarray):
        with self._lock:
            self.interpreter.set_tensor(self._input, block)
            self.interpreter.invoke()
            logits = self.interpreter.get_tensor(self._logits)
            recon = self.interpreter.get_tensor(self._recon) if self.scores_anomalies else None
        # The same formula as the Keras and torch families' anomaly_score: per-image mean squared error.
        anomaly = np.square(recon - block).reshape(len(block), -1).mean(axis=1) if recon is not None else None
        return softmax(logits.astype(np.float32)), anomaly

    def predict(self, x: np.ndarray) -> Prediction:
        return predict_in_blocks(x, self._forward, self.scores_anomalies, BLOCK_ROWS)


def _check(interpreter, spec: dict[str, Any], path: Path) -> tuple[int, dict[str, int]]:
    """(input index, output name -> index) once the graph's inputs and outputs are what maas exports."""
    def show(details):
        return ", ".join(f"{[int(n) for n in d['shape']]} {np.dtype(d['dtype']).name}" for d in details) or "none"

    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    want_in = (BLOCK_ROWS, *spec["input_shape"])
    if len(inputs) != 1 or tuple(inputs[0]["shape"]) != want_in or inputs[0]["dtype"] != np.float32:
        raise ArtifactError(f"{path} takes {show(inputs)}; maas exports one float32 input of shape {list(want_in)} "
                            f"for this model.yaml: it is not the model maas wrote")
    want_out = expected_outputs(spec)
    found: dict[str, int] = {}
    for name, shape in want_out.items():
        hits = [d["index"] for d in outputs if tuple(d["shape"]) == shape and d["dtype"] == np.float32]
        if len(hits) == 1:
            found[name] = hits[0]
    if len(outputs) != len(want_out) or len(found) != len(want_out):
        wanted = ", ".join(f"{name} {list(shape)} float32" for name, shape in want_out.items())
        raise ArtifactError(f"{path} returns {show(outputs)}; maas exports {wanted} for this model.yaml: "
                            f"it is not the model maas wrote")
    return inputs[0]["index"], found


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    """The flatbuffer (sha256 checked) in a LiteRT interpreter, its inputs and outputs checked against model.yaml."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(directory) / spec["weights"]
    data = model_files.read_artifact(directory, spec)
    try:
        interpreter = Interpreter(model_content=data, num_threads=runtime_threads())
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:  # LiteRT's errors for a buffer that is no model it can run
        raise ArtifactError(f"{path} is not a TFLite model LiteRT can run: {e}") from None
    input_index, output_index = _check(interpreter, spec, path)
    return model_files.LoadedModel(LiteRTPredictor(interpreter, input_index, output_index), interpreter, spec)
