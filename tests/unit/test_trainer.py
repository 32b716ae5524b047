"""The torch trainer's parts: optimizers and schedules by name, early stopping, fine-tuning."""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT, copy_outputs
from maas.backends.torch.optim import make_optimizer, make_scheduler
from maas.config import compose
from maas.data.split_files import read_split
from maas.errors import ConfigError


def lrs(option: str, epochs: int = 10, steps_per_epoch: int = 4, val_losses=None) -> list[float]:
    """The learning rate before every step, over `epochs`, for the scheduler `option` of conf/."""
    t = compose([f"trainer/scheduler={option}"]).trainer
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], dict(t.optimizer))
    sched, step_on = make_scheduler(opt, dict(t.scheduler), steps_per_epoch=steps_per_epoch, epochs=epochs)
    seen = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            if step_on == "batch":
                sched.step()
        if step_on == "epoch":
            sched.step((val_losses or [1.0] * epochs)[epoch])
    return seen


@pytest.mark.parametrize("option", sorted(p.stem for p in (ROOT / "conf/trainer/optimizer").glob("*.yaml")))
def test_every_optimizer_option_builds_its_class_with_its_arguments(option):
    t = compose([f"trainer/optimizer={option}"]).trainer
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(3))], dict(t.optimizer))
    assert type(opt).__name__.lower() == option
    assert opt.param_groups[0]["lr"] == t.optimizer.lr
    assert opt.param_groups[0]["weight_decay"] == t.optimizer.weight_decay


def test_cosine_warms_up_to_the_peak_then_decays_to_its_floor():
    t = compose().trainer
    seen = lrs("cosine", epochs=10, steps_per_epoch=4)
    peak, floor = t.optimizer.lr, t.optimizer.lr * t.scheduler.min_lr_ratio
    warm = t.scheduler.warmup_epochs * 4
    assert seen[0] == pytest.approx(peak / warm) and seen[warm] == pytest.approx(peak)
    assert all(a >= b - 1e-12 for a, b in zip(seen[warm:], seen[warm + 1:]))  # never rises after warmup
    assert seen[-1] == pytest.approx(floor, rel=0.05)


def test_step_multiplies_by_gamma_every_step_epochs():
    t = compose(["trainer/scheduler=step", "trainer.scheduler.warmup_epochs=0", "trainer.scheduler.step_epochs=3"]).trainer
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], dict(t.optimizer))
    sched, _ = make_scheduler(opt, dict(t.scheduler), steps_per_epoch=2, epochs=9)
    seen = []
    for _ in range(18):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lr, gamma = t.optimizer.lr, t.scheduler.gamma
    assert seen[0] == seen[5] == pytest.approx(lr) and seen[6] == pytest.approx(lr * gamma)
    assert seen[12] == pytest.approx(lr * gamma ** 2)


def test_plateau_cuts_the_rate_only_after_patience_epochs_without_progress():
    t = compose(["trainer/scheduler=plateau"]).trainer
    patience = t.scheduler.patience
    improving = [1.0 - 0.1 * e for e in range(5)]
    flat = [0.5] * (patience + 3)
    seen = lrs("plateau", epochs=len(improving) + len(flat), steps_per_epoch=1, val_losses=improving + flat)
    assert seen[:len(improving) + patience + 1] == [t.optimizer.lr] * (len(improving) + patience + 1)
    assert seen[-1] == pytest.approx(t.optimizer.lr * t.scheduler.factor)


def test_an_unknown_optimizer_argument_is_named():
    with pytest.raises(ConfigError, match="trainer.optimizer.momentum is not an argument of adamw"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "adamw", "lr": 0.1, "momentum": 0.9})


def test_early_stopping_ends_training_after_patience_epochs_without_a_better_val_loss(tiny_run, tmp_path, capsys):
    from maas.registry import get

    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    cfg.trainer.epochs, cfg.trainer.early_stopping_patience = 30, 1
    cfg.trainer.optimizer.lr = 0.3  # far too high: the val loss stops improving at once
    summary = get("train").run(cfg)
    out = capsys.readouterr().out
    assert "early stop after epoch" in out
    ran = out.count("/30  train_loss")
    assert ran < 30 and ran == summary["best_epoch"] + 1


def test_fine_tuning_starts_from_pretrained_weights_and_keeps_frozen_layers(tiny_run, tmp_path):
    """Pretrain on the train split, then fine-tune only the head on the val split."""
    import numpy as np

    from maas import model_files
    from maas.backends.torch import api

    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    pretrained = model_files.load(tiny_run[0].paths.trained)
    x_val, y_val = (read_split(cfg.paths.processed, "val")[k] for k in ("x", "y"))
    x_test, y_test = (read_split(cfg.paths.processed, "test")[k] for k in ("x", "y"))
    cfg.model.init_from = str(tiny_run[0].paths.trained)
    cfg.trainer.freeze, cfg.trainer.epochs, cfg.trainer.resume = ["features"], 3, False
    result = api.train(cfg, (x_val, y_val), (x_test, y_test), log=lambda epoch, metrics: None)
    before, after = api.get_weights(pretrained.model), api.get_weights(result.model)
    frozen = [k for k in before if k.startswith("features.") and k.endswith("weight")]
    assert frozen and all(np.array_equal(before[k], after[k]) for k in frozen)
    head = [k for k in before if k.startswith("head.") and k.endswith("weight")]
    assert head and not any(np.array_equal(before[k], after[k]) for k in head)  # the head learned
    start = (pretrained.predictor.predict(x_test).proba.argmax(1) == y_test).mean()
    assert result.history[0]["val_accuracy"] >= start - 0.05  # it started from the pretrained model, not from scratch


def test_init_from_names_shape_mismatches(tiny_run, tmp_path):
    from maas.backends.torch import api

    model = api.build({**compose(["model.channels=8"]).model})
    with pytest.raises(ConfigError, match=r"shapes differ: .*features.0.weight \[32, 1, 3, 3\] vs \[8, 1, 3, 3\]"):
        api.init_from(model, str(tiny_run[0].paths.trained))
