"""The trained torch model as an ONNX graph for ONNX Runtime: shared by onnx_fp32 and onnx_int8.

The graph is the whole served computation: softmax probabilities (and, for a model
that reconstructs its input, the anomaly score) from one fixed block of BLOCK_ROWS
rows, so ONNX Runtime runs the same fixed-shape blocks as every other predictor
(a row's answer never depends on its batch-mates). torch.onnx's exporter (the
torch.export one; the TorchScript one is deprecated) writes it at a fixed opset, and
everything it records about where the graph came from (stack traces with this
machine's paths, module names) is dropped: the same model gives the same bytes.

torch is imported only here, when a variant is made: loading one (onnx_runtime.py)
needs ONNX Runtime and numpy alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from maas.backends.base import BLOCK_ROWS
from maas.compression._onnx_runtime import ANOMALY, INPUT, PROBA, RUNTIME

OPSET = 18  # torch 2.13's ONNX functions are written for 18: a higher one costs a version conversion
# The last export, by model: compress=auto makes onnx_fp32 and onnx_int8 from one export (seconds each).
_last: tuple[str, tuple[bytes, list[str]]] | None = None


def applies(spec: dict[str, Any]) -> str | None:
    if spec["backend"] != "torch":
        return f"ONNX export is from torch models; this one was trained with {spec['backend']}"
    return None


def _key(source) -> str:
    """The model's identity: architecture, input shape and every weight's bytes."""
    h = hashlib.sha256(json.dumps([source.spec.get("model"), source.spec.get("input_shape"), OPSET, BLOCK_ROWS],
                                  sort_keys=True, default=str).encode())
    for name in sorted(source.weights):
        w = np.require(source.weights[name], requirements="C")
        h.update(f"{name}:{w.dtype}:{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()


def export(source) -> tuple[bytes, list[str]]:
    """(the fp32 ONNX graph's bytes, its output names) for the source's torch model."""
    global _last
    from maas import backends

    key = _key(source)
    if _last is None or _last[0] != key:
        torch_api = backends.get("torch")
        model = torch_api.build(source.spec["model"])
        torch_api.set_weights(model, source.weights)
        names = [PROBA, ANOMALY] if hasattr(model, "anomaly_score") else [PROBA]
        _last = (key, (_export(model, source.spec["input_shape"], names), names))
    return _last[1]


def write_variant(out: Path, source, data: bytes, names: list[str], file: str, compression: dict) -> None:
    """Store an ONNX graph as a model directory: the graph, and model.yaml saying ONNX Runtime runs it."""
    from maas import io, model_files

    io.write_bytes(out / file, data)
    model_files.write_artifact_dir(out, artifact=file, spec={
        **source.spec, "runtime": RUNTIME, "compression": {**compression, "opset": OPSET, "outputs": names}})


def _export(model, input_shape: list[int], names: list[str]) -> bytes:
    import torch

    class Served(torch.nn.Module):
        """What the predictor returns, computed inside the graph."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            proba = torch.softmax(self.inner(x).float(), dim=1)
            return (proba, self.inner.anomaly_score(x).float()) if len(names) == 2 else proba

    block = torch.zeros(BLOCK_ROWS, *input_shape)
    with _quiet():
        program = torch.onnx.export(Served(model).eval(), (block,), dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT], output_names=names, external_data=False, verbose=False)
    proto = program.model_proto
    _strip_provenance(proto)
    return proto.SerializeToString(deterministic=True)


def _strip_provenance(proto) -> None:
    """Drop what the exporter records about the Python that produced each node (file paths, line
    numbers, module names): it changes with the checkout's location, and says nothing the runtime reads."""
    def graph(g) -> None:
        g.doc_string = ""
        for seq in (g.node, g.input, g.output, g.value_info, g.initializer):
            for item in seq:
                del item.metadata_props[:]
                item.doc_string = ""
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    graph(attr.g)
                for sub in attr.graphs:
                    graph(sub)
        del g.metadata_props[:]

    graph(proto.graph)
    del proto.metadata_props[:]
    proto.doc_string = ""
    proto.producer_name, proto.producer_version = "maas", ""


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's notes that concern torch itself, not this model: which torchvision ops it
    skips (torchvision isn't installed), a deprecation inside torch.export, and the LSTM/GRU weight
    list that torch.nn's RNNs rebuild in forward. Anything else still shows."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights.* were assigned")
            yield
    finally:
        registration.setLevel(level)
