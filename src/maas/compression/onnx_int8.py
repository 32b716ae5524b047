"""onnx_int8: the exported ONNX graph with int8 weights and activations (ONNX Runtime static quantization).

Weights are int8 with one scale per output channel; activations are int8 with
one fixed scale per tensor, calibrated (min/max) on the first
compress.onnx_int8.calibration_rows validation rows. The scales are constants
of the graph, so a row's answer does not depend on its batch-mates: it runs the
same fixed-shape blocks as every other predictor. The graph keeps the QDQ form
(QuantizeLinear/DequantizeLinear around standard ops, which ONNX Runtime fuses
into int8 kernels): standard ONNX only, and as fast as the QOperator form
(com.microsoft ops) on the digits CNN, 0.36 ms a 16-row block on one AVX2 core
either way, vs 0.54 ms in fp32.

What stays float: the layer that computes the logits and the softmax after it
(int8 probabilities would take only a few dozen distinct values, and equal
top scores would decide a class by index), and the anomaly score's arithmetic
after the reconstruction (its scale, calibrated on clean images, would clip
the large scores of exactly the images it is meant to flag).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.backends.base import BLOCK_ROWS
from maas.compression import _onnx_export, _onnx_runtime
from maas.errors import ConfigError

FILE = "model.int8.onnx"
# ONNX Runtime quantizes LSTM and GRU only dynamically (activation scales from each batch, so a row's
# answer would depend on its batch-mates): statically, their weights stay float, no smaller, no faster.
FLOAT_ONLY = ("lstm", "gru")


def applies(spec: dict[str, Any]) -> str | None:
    arch = (spec.get("model") or {}).get("arch")
    if arch in FLOAT_ONLY:
        return (f"ONNX Runtime's static int8 quantization leaves a {arch}'s recurrent weights in float "
                f"(no smaller, no faster); onnx_fp32 runs it without torch")
    return _onnx_export.applies(spec)


def calibration_blocks(source) -> tuple[list[np.ndarray], int]:
    """(the calibration rows in blocks of BLOCK_ROWS; the last one filled up with rows from the start
    (repeating real rows leaves every observed min and max as it is, zero rows would not), how many rows)."""
    rows = source.options("onnx_int8").get("calibration_rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"compress.onnx_int8.calibration_rows={rows!r} must be an integer >= 1")
    if source.calibration is None or not len(source.calibration):
        raise ConfigError("compress.method=onnx_int8 needs calibration rows (the validation split), and got none")
    x = np.ascontiguousarray(source.calibration[:rows], dtype=np.float32)
    real = len(x)
    x = np.resize(x, (-(-real // BLOCK_ROWS) * BLOCK_ROWS, *x.shape[1:]))
    return [x[i:i + BLOCK_ROWS] for i in range(0, len(x), BLOCK_ROWS)], real


# Ops that hold weights: where a float tail walking back from an output stops.
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def float_nodes(graph) -> list[str]:
    """The nodes to leave in float: from each output back to (and with) the first op that holds weights,
    i.e. the logits layer and the softmax; for the anomaly score, its arithmetic and the layer that
    makes the reconstruction, but nothing the probabilities also depend on."""
    producer = {out: node for node in graph.node for out in node.output}
    keep = _tail(producer, _onnx_runtime.PROBA, shared=set())
    if any(o.name == _onnx_runtime.ANOMALY for o in graph.output):
        keep += _tail(producer, _onnx_runtime.ANOMALY, shared=_upstream(producer, _onnx_runtime.PROBA))
    return keep


def _tail(producer: dict, output: str, shared: set[str]) -> list[str]:
    names, stack = [], [output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in shared or node.name in names:
            continue
        names.append(node.name)
        if node.op_type not in WEIGHTED:
            stack.extend(node.input)
    return names


def _upstream(producer: dict, tensor: str) -> set[str]:
    seen, stack = set(), [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def float_inputs(model, names: list[str]) -> None:
    """Feed the float nodes the graph's input itself, not its int8 round trip: the quantizer rewires
    every reader of a tensor it quantizes, so the anomaly score would otherwise subtract the
    reconstruction from an input clipped to the clean calibration images' range. (Only the graph's
    input: inside the graph, the tensor before a QuantizeLinear can lack a ReLU that the quantizer
    folded into its range.) Q/DQ pairs left without readers are dropped."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    producer = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name not in names:
            continue
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inputs:
                node.input[i] = q.input[0]
    while True:
        read = {t for node in graph.node for t in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(out in read for out in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {t for node in graph.node for t in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def quantize(fp32: bytes, blocks: list[np.ndarray]) -> bytes:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Blocks(CalibrationDataReader):
        def __init__(self):
            self.left = iter(blocks)

        def get_next(self):
            block = next(self.left, None)
            return None if block is None else {_onnx_runtime.INPUT: block}

    with tempfile.TemporaryDirectory(prefix="maas-onnx-int8-") as tmp:
        tmp = Path(tmp)
        (tmp / "fp32.onnx").write_bytes(fp32)
        # Shape inference and graph clean-up first, as ONNX Runtime's quantizer asks; the shapes are all
        # fixed, so its symbolic inference (for dynamic sizes) has nothing to do.
        quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
        exclude = float_nodes(onnx.load(str(tmp / "pre.onnx")).graph)
        # S8S8: ONNX Runtime's recommended CPU setting; U8S8 measured no faster here and can saturate
        # on AVX2 machines without VNNI.
        quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Blocks(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
                        # A LayerNorm's scale is a vector: one scale per element (axis 0), not per row of axis 1.
                        extra_options={"QDQOpTypePerChannelSupportToAxis": {"LayerNormalization": 0}})
        model = onnx.load(str(tmp / "int8.onnx"))
    float_inputs(model, exclude)
    return model.SerializeToString(deterministic=True)


def write(source, out: Path) -> None:
    blocks, rows = calibration_blocks(source)
    fp32, names = _onnx_export.export(source)
    _onnx_export.write_variant(out, source, quantize(fp32, blocks), names, FILE,
                  {"method": "onnx_int8", "format": "QDQ", "calibration_rows": rows})


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    return _onnx_runtime.load(directory, spec)
