"""`trainer.privacy`: differentially private training (DP-SGD), its settings and what it can't be combined with.

Cheap to import (no torch, no Opacus): `Settings.from_trainer` reads it, so `maas compose`
refuses a bad value or an impossible combination before anything runs. The training
itself is maas.backends.torch.private.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from maas.errors import ConfigError

ACCOUNTANTS = ("prv", "rdp", "gdp")  # Opacus's accountants by its own names

# Keys whose other values DP-SGD can't train with here: (key, the one value allowed, why, as a clause).
CLASHES = (
    ("backend", "torch", "DP-SGD here is Opacus's, which trains torch models only"),
    ("nproc", 1, "Opacus's Poisson sampling and privacy accounting run in one process here (no DDP)"),
    ("grad_clip_norm", 0.0, "DP-SGD clips each example's gradient to trainer.privacy.max_grad_norm instead"),
    ("precision", "32", "clipping must see each example's true gradient (16-mixed's loss scaling would clip scaled "
                        "ones; bf16 per-example gradients are untested here)"),
    ("compile", False, "Opacus's per-example gradient hooks are untested under torch.compile here"),
    # Measured: Opacus's per-example conv gradients differ on channels-last tensors.
    ("channels_last", False, "Opacus's per-example conv gradients are wrong on channels-last tensors"),
)


@dataclass(frozen=True)
class Privacy:
    """What DP-SGD needs: the budget (epsilon, delta) for the whole run, the clipping norm, the accountant."""

    target_epsilon: float
    delta: float
    max_grad_norm: float
    accountant: str = "prv"


def from_trainer(t: dict[str, Any]) -> Privacy | None:
    """`trainer.privacy` checked, with the rest of `trainer` it must agree with; None when it is off."""
    p = t.get("privacy") or {}
    if not isinstance(p, dict):
        raise ConfigError(f"trainer.privacy={p!r} must be a mapping (enabled, target_epsilon, delta, ...)")
    enabled = p.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"trainer.privacy.enabled={enabled!r} must be true or false")
    if not enabled:
        return None

    def positive(key: str, below: float = math.inf) -> float:
        value = p.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < below:
            bound = f"> 0 and < {below:g}" if below != math.inf else "> 0 (and finite)"
            raise ConfigError(f"trainer.privacy.{key}={value!r} must be a number {bound}")
        return float(value)

    privacy = Privacy(target_epsilon=positive("target_epsilon"), delta=positive("delta", 1.0),
                      max_grad_norm=positive("max_grad_norm"), accountant=p.get("accountant", "prv"))
    if privacy.accountant not in ACCOUNTANTS:
        raise ConfigError(f"trainer.privacy.accountant={privacy.accountant!r} is not allowed; "
                          f"choose one of {list(ACCOUNTANTS)}")
    for key, allowed, why in CLASHES:
        value = t.get(key, allowed)
        if value != allowed:
            raise ConfigError(f"trainer.privacy.enabled=true can't train with trainer.{key}={_shown(value)}: {why}; "
                              f"set trainer.{key}={_shown(allowed)} or trainer.privacy.enabled=false")
    return privacy


def _shown(value: Any) -> str:
    """As it is written in an override: true, 0, bf16-mixed."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_model(model: dict[str, Any], privacy: Privacy | None) -> None:
    """A BatchNorm model can't be trained privately: name the key that makes it one."""
    if privacy is not None and model.get("norm") == "batch":
        raise ConfigError(f"trainer.privacy.enabled=true can't train model.norm=batch (model.arch={model.get('arch')}): "
                          "BatchNorm mixes the examples of a batch, and DP-SGD needs each example's own gradient; "
                          "set model.norm=group, or leave model.norm out (it follows trainer.privacy.enabled)")


def check_rows(rows: int, privacy: Privacy) -> None:
    """delta is the chance the guarantee fails outright; at 1/rows, releasing one whole row at random would meet it."""
    if privacy.delta >= 1 / rows:
        raise ConfigError(f"trainer.privacy.delta={privacy.delta:g} must be below 1 / (training rows) = 1/{rows} = "
                          f"{1 / rows:.3g}: a delta that large allows leaking a whole row; 1e-5 or less is usual")


def spent(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The DP-SGD record a model.yaml carries (epsilon spent, delta, ...), None for a model trained without it."""
    return (spec.get("training") or {}).get("privacy")
