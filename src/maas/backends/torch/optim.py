"""Optimizers and learning-rate schedules by maas's names, from `trainer.optimizer` / `trainer.scheduler`.

The names (sgd, adam, adamw; cosine, step, plateau) are shared with the
TensorFlow backend; each backend maps them to its own classes here, so a
config never carries an import path.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch

from maas.errors import ConfigError

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("cosine", "step", "plateau")


def make_optimizer(params, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    kwargs = dict(cfg)
    name = kwargs.pop("name", None)
    if name not in OPTIMIZERS:
        raise ConfigError(f"trainer.optimizer.name={name!r} is not allowed; choose one of {list(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"trainer.optimizer.{unknown[0]} is not an argument of {name} "
                          f"(arguments: {', '.join(sorted(accepted))})")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as e:  # torch names the bad value, e.g. "Invalid learning rate: -1"
        raise ConfigError(f"trainer.optimizer ({name}): {e}") from e


def _warmup_then(optimizer, main, warmup_steps: int):
    if warmup_steps <= 0:
        return main
    # LinearLR from lr/warmup_steps up to lr; the main schedule takes over at the milestone.
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], *, steps_per_epoch: int,
                   epochs: int) -> tuple[Any, str]:
    """The scheduler and when to step it: "batch" (after each optimizer step) or "epoch" (on val loss)."""
    name = cfg.get("name")
    lr = optimizer.param_groups[0]["lr"]
    warmup = int(cfg.get("warmup_epochs", 0)) * steps_per_epoch
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler
    if name == "cosine":
        cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=lr * cfg["min_lr_ratio"])
        return _warmup_then(optimizer, cosine, warmup), "batch"
    if name == "step":
        step = sched.StepLR(optimizer, step_size=max(1, int(cfg["step_epochs"]) * steps_per_epoch), gamma=cfg["gamma"])
        return _warmup_then(optimizer, step, warmup), "batch"
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="min", factor=cfg["factor"], patience=cfg["patience"],
                                       min_lr=lr * cfg["min_lr_ratio"]), "epoch"
    raise ConfigError(f"trainer.scheduler.name={name!r} is not allowed; choose one of {list(SCHEDULERS)}")
