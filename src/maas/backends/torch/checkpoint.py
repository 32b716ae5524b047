"""Transitional: model directories moved to `maas.model_files` (backend-neutral).

Kept only until the Bento's service and its tests load through `maas.model_files`.
"""

from __future__ import annotations

from maas.model_files import MODEL_FILE, load, read_spec  # noqa: F401


def load_model(directory, device="cpu"):
    loaded = load(directory)
    return loaded.predictor.model, loaded.spec
