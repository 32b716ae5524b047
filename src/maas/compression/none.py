"""none: the trained fp32 model as it is, run by its training backend; the reference every variant is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files


def applies(spec: dict[str, Any]) -> str | None:
    return None


def write(source, out: Path) -> None:
    model_files.write_model_dir(out, weights=source.weights, spec={**source.spec, "compression": {"method": "none"}})


def fp32_weights(directory: Path, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    return model_files.read_weights(directory, spec)


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    return model_files.load_in_backend(directory, spec, fp32_weights(directory, spec))
