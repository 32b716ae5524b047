"""An ONNX variant (onnx_fp32, onnx_int8) loaded as the Bento loads it: ONNX Runtime and numpy, no torch.

The graph maas exports takes one block of rows (input `x`, fixed shape
(rows, *input_shape) float32) and returns `proba` (rows, classes) and, for a model
that reconstructs its input, `anomaly` (rows,). A file that has another interface
(a graph exported by something else, or with a free batch size, whose answers
could depend on their batch-mates) is refused here when it loads, naming what
differs, rather than failing on the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.backends.base import Prediction, predict_in_blocks
from maas.errors import ArtifactError

RUNTIME = "onnxruntime"
INPUT, PROBA, ANOMALY = "x", "proba", "anomaly"
FLOAT = "tensor(float)"


class OnnxPredictor:
    """Probabilities (and anomaly scores) from fixed blocks of `rows` rows (backends.base.predict_in_blocks)."""

    def __init__(self, session, rows: int, outputs: list[str]):
        self.session = session
        self.rows = rows
        self.outputs = outputs
        self.scores_anomalies = ANOMALY in outputs

    def _forward(self, block: np.ndarray):
        out = self.session.run(self.outputs, {INPUT: block})
        return out[0], out[1] if self.scores_anomalies else None

    def predict(self, x: np.ndarray) -> Prediction:
        return predict_in_blocks(x, self._forward, self.scores_anomalies, self.rows)


def session(data: bytes, where: Path):
    """An ONNX Runtime session on the CPU with compression.runtime_threads() threads."""
    import onnxruntime as ort

    from maas.compression import runtime_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = runtime_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings name graph internals, not what to fix
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for an unloadable graph
        raise ArtifactError(f"{where} is not an ONNX model ONNX Runtime can load: {e}") from None


def check_interface(sess, spec: dict[str, Any], where: Path) -> tuple[int, list[str]]:
    """(rows per block, output names) once the session's inputs and outputs are those maas exports for `spec`."""
    expected_outputs = list((spec.get("compression") or {}).get("outputs") or [PROBA])
    if expected_outputs not in ([PROBA], [PROBA, ANOMALY]):
        raise ArtifactError(f"{where.parent / model_files.MODEL_FILE}: compression.outputs={expected_outputs} "
                            f"must be [{PROBA}] or [{PROBA}, {ANOMALY}]")
    inputs = [(i.name, i.type, list(i.shape)) for i in sess.get_inputs()]
    outputs = [(o.name, o.type, list(o.shape)) for o in sess.get_outputs()]
    problem = ""
    if len(inputs) != 1 or inputs[0][:2] != (INPUT, FLOAT):
        problem = f"its inputs are {inputs}, not one float input {INPUT!r}"
    else:
        rows = inputs[0][2][0] if inputs[0][2] else None
        if not isinstance(rows, int) or rows < 1:
            problem = (f"its input's batch size is {rows!r}, not a fixed number of rows "
                       f"(with a free one, a row's answer could depend on its batch-mates)")
        elif inputs[0][2][1:] != list(spec["input_shape"]):
            problem = f"its input is {inputs[0][2][1:]} per row, but model.yaml says {list(spec['input_shape'])}"
        else:
            shapes = {PROBA: [rows, len(spec["classes"])], ANOMALY: [rows]}
            want = [(name, FLOAT, shapes[name]) for name in expected_outputs]
            if outputs != want:
                problem = f"its outputs are {outputs}, but maas exports {want} for this model"
    if problem:
        raise ArtifactError(f"{where} is not the graph maas exports for this model: {problem}")
    return rows, expected_outputs


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    directory = Path(directory)
    where = directory / spec["weights"]
    if model_files.runtime(spec) != RUNTIME:
        raise ArtifactError(f"{directory / model_files.MODEL_FILE}: compression.method="
                            f"{model_files.compression_method(spec)} runs on {RUNTIME}, but runtime="
                            f"{model_files.runtime(spec)!r}")
    sess = session(model_files.read_artifact(directory, spec), where)
    rows, outputs = check_interface(sess, spec, where)
    return model_files.LoadedModel(OnnxPredictor(sess, rows, outputs), sess, spec)
