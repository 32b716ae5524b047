"""Architectures by name: one table per backend, the only way a model gets built.

A model's config names its architecture (`arch: cnn`) and gives the
constructor's arguments. The same mapping is stored in model.yaml beside the
weights, and model.yaml travels inside Bentos, DVC caches and model stores: it
is data, so nothing in it may choose code. No import path, no `_target_`, no
Hydra `instantiate` here (those stay for configs the user writes in conf/, such
as the optimizer); an unknown name or argument is refused before anything runs.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

from maas.errors import ConfigError

ARCH_KEY = "arch"
# Model keys that are not constructor arguments: where to start from (read by the trainer).
NOT_ARGUMENTS = ("init_from",)


def architectures(backend: str) -> dict[str, type]:
    """The table name -> class of `backend`, imported only when that backend is used."""
    if backend == "torch":
        from maas.models.torch import ARCHITECTURES

        return ARCHITECTURES
    if backend == "tensorflow":
        from maas.models.tensorflow import ARCHITECTURES

        return ARCHITECTURES
    from maas.backends import BACKENDS

    raise ConfigError(f"backend {backend!r} has no architectures; backends are: {', '.join(BACKENDS)}")


def _closest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def resolve(model_cfg: Mapping[str, Any], backend: str = "torch") -> tuple[type, dict[str, Any]]:
    """The class `model_cfg` names and the keyword arguments to build it, checked against its signature."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    if not isinstance(model_cfg, Mapping):
        raise ConfigError(f"a model config must be a mapping with {ARCH_KEY!r}, got {type(model_cfg).__name__}")
    kwargs = dict(model_cfg)
    hidden = sorted(k for k in kwargs if str(k).startswith("_"))
    if hidden:
        # `_target_`, `_args_`, `_partial_`: Hydra's instantiate keys would turn a model file into code.
        raise ConfigError(f"model keys {hidden} are not allowed: a model names its architecture with "
                          f"{ARCH_KEY}: <name>, never an import path")
    table = architectures(backend)
    name = kwargs.pop(ARCH_KEY, None)
    for key in NOT_ARGUMENTS:
        kwargs.pop(key, None)
    if name not in table:
        hint = _closest(name, table) if isinstance(name, str) else ""
        raise ConfigError(f"model.{ARCH_KEY}={name!r} is not a {backend} architecture{hint} "
                          f"(known: {', '.join(sorted(table))})")
    cls = table[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not an argument of {ARCH_KEY}={name}{_closest(unknown[0], accepted)} "
                          f"(arguments: {', '.join(accepted)})")
    return cls, kwargs


def build_model(model_cfg: Mapping[str, Any], backend: str = "torch"):
    """Build the architecture `model_cfg` names; a constructor's own error names the model."""
    cls, kwargs = resolve(model_cfg, backend)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot build model {model_cfg[ARCH_KEY]!r} with {kwargs}: {e}") from e
