"""Framework backends by name: `trainer.backend` picks one, model.yaml records which.

Each backend is a module `maas.backends.<name>.api` with the same functions
(`build`, `get_weights`, `set_weights`, `predictor`, `train`), so stages,
the Bento and benchmarks never import a framework themselves. The name is
looked up in this fixed table, never imported from a string read from a file.
"""

from __future__ import annotations

from types import ModuleType

from maas.errors import ConfigError

BACKENDS = ("torch", "tensorflow")


def get(name: str) -> ModuleType:
    """The backend's api module, imported on first use (TensorFlow alone costs seconds)."""
    if name == "torch":
        from maas.backends.torch import api
    elif name == "tensorflow":
        from maas.backends.tensorflow import api
    else:
        raise ConfigError(f"trainer.backend={name!r} is not allowed; choose one of {list(BACKENDS)}")
    return api
