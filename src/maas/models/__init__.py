"""Architectures by name. A model is rebuilt from its config, never unpickled."""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from maas.errors import ConfigError

# Only classes in this package may be built from a config: model.yaml travels
# inside Bentos, and `_target_` must not become a way to run arbitrary code.
ALLOWED_PREFIX = "maas.models."


def build_model(model_cfg: DictConfig | Mapping[str, Any]):
    import hydra.utils

    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(dict(model_cfg))
    target = cfg.get("_target_")
    if not isinstance(target, str) or not target.startswith(ALLOWED_PREFIX):
        raise ConfigError(f"model._target_={target!r} must name a class under {ALLOWED_PREFIX}")
    try:
        return hydra.utils.instantiate(cfg)
    except Exception as e:  # instantiate wraps the constructor's error; keep its message
        raise ConfigError(f"cannot build model {target}: {e}") from e
