"""Read one config value and fail naming the key and what is allowed."""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from maas.errors import ConfigError


def choice(cfg: DictConfig, key: str, allowed: Sequence[str]) -> str:
    """Read `key` and fail with the key and the allowed values if it is not one of them."""
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {sorted(allowed)}")
    return value


def number(cfg: DictConfig, key: str, low: float, high: float) -> float:
    """Read a numeric `key` and fail with the key and the range if it is not in [low, high]."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key}={value!r} must be a number in [{low:g}, {high:g}]")
    return float(value)
