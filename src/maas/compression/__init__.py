"""Compression methods by name, one module each, all with the same three functions.

A method turns the trained fp32 model (model.yaml + weights) into a stored
variant: files in a model directory plus the model.yaml that describes them,
never a pickle. It also says which runtime runs the variant (the training
backend, ONNX Runtime or LiteRT), and loads it back exactly as the Bento will.

    applies(spec) -> str | None       why the method can't take this model, or None
    write(source, out) -> dict        write the variant's artifact into `out`; return the model.yaml
                                      entries it adds: {"weights": file name, "runtime": ..., "compression": {...}}
    load(directory, spec) -> Loaded   the variant, ready to predict (its artifact's sha256 already checked)

The names below are the only ones a config or a model.yaml can pick: a
model.yaml naming anything else is refused, never imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from maas.errors import ArtifactError, ConfigError

# In the order `compress=auto` tries them. none is the fp32 model itself, the reference every variant is measured against.
METHODS = ("none", "int8_weights", "int8_dynamic", "int8_static", "prune", "onnx_fp32", "onnx_int8",
           "tflite_dynamic", "tflite_int8")
AUTO = "auto"
SELECTIONS = ("fastest_within", "smallest_within")
# Method name -> its module under maas.compression: a fixed table, so a name read from a file chooses no code.
_MODULES = {"none": "none", "int8_weights": "int8_weights", "int8_dynamic": "int8_dynamic",
            "int8_static": "int8_static", "prune": "prune", "onnx_fp32": "onnx_fp32", "onnx_int8": "onnx_int8",
            "tflite_dynamic": "tflite_dynamic", "tflite_int8": "tflite_int8"}


@dataclass
class Source:
    """What a method may use: the trained model and the data it may calibrate or fine-tune on (never test)."""

    spec: dict[str, Any]                      # the trained model's model.yaml
    weights: dict[str, np.ndarray]            # its fp32 arrays, sha256 and finiteness checked
    settings: dict[str, Any]                  # cfg.compress as plain data: a method reads compress.<its name>
    calibration: np.ndarray | None = None     # preprocessed validation inputs (N, C, H, W) float32
    # The preprocessed training split, for fine-tuning: a function, so only a method that fine-tunes reads it.
    train: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    seed: int = 0

    def options(self, method: str) -> dict[str, Any]:
        return dict(self.settings.get(method) or {})


def get(method: str) -> ModuleType:
    """The method's module; a name outside METHODS, or one not available in this build, is refused."""
    if method not in METHODS:
        raise ConfigError(f"compression method {method!r} is not known; choose one of {[*METHODS, AUTO]}")
    if method not in _MODULES:
        raise ConfigError(f"compression method {method!r} is not available in this version of maas")
    return importlib.import_module(f"maas.compression.{_MODULES[method]}")


def from_spec(spec: dict[str, Any]) -> ModuleType:
    """The module that loads a stored model, by the method its model.yaml records."""
    method = (spec.get("compression") or {}).get("method", "none")
    try:
        return get(method)
    except ConfigError as e:
        raise ArtifactError(f"model.yaml: {e}") from None


def available() -> tuple[str, ...]:
    return tuple(m for m in METHODS if m in _MODULES)


def runtime_threads() -> int:
    """Intra-op threads for ONNX Runtime and LiteRT: BentoML sets OMP_NUM_THREADS per worker from the
    service's `resources: cpu`; one when unset, as the compress stage times every variant."""
    import os

    threads = os.environ.get("OMP_NUM_THREADS") or "1"
    if not threads.isdigit() or int(threads) < 1:
        raise ConfigError(f"OMP_NUM_THREADS={threads!r} must be a whole number of threads >= 1")
    return int(threads)


def artifact_bytes(directory: str | Path, spec: dict[str, Any]) -> int:
    """The stored size of a model: its artifact file (weights, ONNX graph or TFLite flatbuffer)."""
    return (Path(directory) / spec["weights"]).stat().st_size
