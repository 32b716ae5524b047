"""Differentially private training (trainer.privacy, DP-SGD through Opacus): the budget, the stored model, the card."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_overrides
from maas import io, model_files
from maas.config import compose
from maas.errors import ConfigError

# Cheap to train: a narrow CNN (per-example gradients cost time in proportion to the weights), 5 steps an
# epoch, and the RDP accountant, whose noise search takes a third of PRV's (the default; same code path).
PRIVATE = ["trainer.privacy.enabled=true", "trainer.privacy.target_epsilon=2", "trainer.privacy.accountant=rdp",
           "trainer.batch_size=256", "model.channels=8", "model.hidden=32"]


def private_cfg(tiny_run, tmp_path: Path, *extra: str):
    """The tiny config writing under tmp_path, reading the tiny run's split, with privacy on."""
    split = tiny_run[0].paths.processed
    overrides = [o for o in tiny_overrides(tmp_path, Path(tiny_run[0].paths.raw)) if not o.startswith("paths.processed=")]
    return compose([*overrides, f"paths.processed={split}", *PRIVATE, *extra])


def test_private_training_spends_within_budget_resumes_and_stores_the_config_built_model(tiny_run, tmp_path, capsys):
    from maas.backends.torch import api
    from maas.model_card import build_card, render_markdown
    from maas.registry import get
    from maas.stages.preprocess import load_split

    cfg = private_cfg(tiny_run, tmp_path)
    assert cfg.model.norm == "group" and cfg.trainer.epochs == 2  # the norm follows trainer.privacy.enabled
    train, val = load_split(cfg, "train"), load_split(cfg, "val")

    class Killed(Exception):
        pass

    def kill_in_epoch_2(epoch, metrics):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):  # epoch 1's state, its privacy spent included, is saved
        api.train(cfg, train, val, log=kill_in_epoch_2)
    summary = get("train").run(cfg)
    assert "train: resumed from epoch 1" in capsys.readouterr().out

    spec = model_files.read_spec(cfg.paths.trained)
    p = spec["training"]["privacy"]
    steps_per_epoch = round(1 / p["sample_rate"])
    # Both epochs' steps are counted, the killed run's too: the budget is met, not reset by the resume.
    assert p["steps"] == 2 * steps_per_epoch and 0 < p["epsilon"] <= cfg.trainer.privacy.target_epsilon
    assert p["epsilon"] > 0.9 * cfg.trainer.privacy.target_epsilon  # Opacus's noise spends about all of it
    assert (p["delta"], p["training_rows"], p["sampling"]) == (1e-5, len(train[1]), "poisson")
    live = io.read_json(Path(cfg.paths.reports) / "train" / "metrics.json")
    assert (live["epsilon"], live["delta"]) == (p["epsilon"], p["delta"])

    # The stored weights are plain names of the config-built model (no GradSampleModule `_module.`), and
    # loaded back into the architecture model.yaml builds they score val exactly as training measured it.
    weights = model_files.read_weights(cfg.paths.trained)
    assert spec["model"]["norm"] == "group"
    assert sorted(weights) == sorted(api.build(spec["model"]).state_dict())
    loaded = model_files.load(cfg.paths.trained)
    proba = loaded.predictor.predict(val[0]).proba
    assert abs((proba.argmax(1) == val[1]).mean() - summary["best_val_accuracy"]) <= 1 / len(val[1])
    val_loss = -np.log(proba[np.arange(len(val[1])), val[1]]).mean()
    assert val_loss == pytest.approx(summary["best_val_loss"], rel=1e-4)

    card = build_card(model_tag="maas-digits:dp", spec=spec,
                      metrics={"test": {"accuracy": 0.5, "macro_f1": 0.5, "samples": 270}, "val": {"accuracy": 0.5}},
                      compression={"chosen": "none", "why": "-", "size_ratio": 1.0, "speedup": 1.0, "speed_batch": 1,
                                   "served_test_accuracy": 0.5, "variants": []},
                      validation={"data_file": "digits.csv", "rows": 1797})
    assert card["privacy"]["epsilon"] == p["epsilon"]
    md = render_markdown(card).split("## Privacy", 1)[1]
    assert f"(epsilon = {np.ceil(p['epsilon'] * 1000) / 1000:.3f}, delta = 1e-05)-differentially private" in md

    # Pruning must not fine-tune on the rows DP-SGD protected.
    from maas import compression
    from maas.compression import prune

    def never():
        raise AssertionError("a private model's pruning read the training split")

    source = compression.Source(spec=spec, weights=weights, train=never, settings={
        "prune": {"sparsity": 0.5, "finetune_epochs": 2, "lr": 1e-3, "batch_size": 64}})
    (tmp_path / "pruned").mkdir()
    prune.write(source, tmp_path / "pruned")
    assert model_files.read_spec(tmp_path / "pruned")["compression"]["finetune_epochs"] == 0


def test_what_dp_sgd_cannot_train_with_is_refused_naming_the_key():
    from omegaconf import OmegaConf

    from maas.backends.base import Settings
    from maas.backends.privacy import Privacy, check_model, check_rows

    with pytest.raises(ConfigError, match=r"trainer\.privacy\.enabled=true can't train with trainer\.backend=tensorflow: "
                                          r"DP-SGD here is Opacus's, which trains torch models only"):
        compose(["trainer.privacy.enabled=true", "trainer.backend=tensorflow"])  # before anything runs
    with pytest.raises(ConfigError, match=r"trainer\.nproc=2: Opacus's Poisson sampling .* set trainer\.nproc=1"):
        compose(["trainer=ddp", "trainer.privacy.enabled=true"])
    trainer = OmegaConf.to_container(compose(["trainer.privacy.enabled=true"]).trainer, resolve=True)
    assert Settings.from_trainer(trainer, seed=0).privacy == Privacy(target_epsilon=3.0, delta=1e-5, max_grad_norm=1.0)
    for key, value, named in [("grad_clip_norm", 1.0, "trainer.grad_clip_norm=1: DP-SGD clips each example's"),
                              ("precision", "bf16-mixed", "trainer.precision=bf16-mixed"),
                              ("compile", True, "trainer.compile=true"), ("channels_last", True, "trainer.channels_last=true"),
                              ("privacy", {**trainer["privacy"], "accountant": "moments"}, "accountant='moments'"),
                              ("privacy", {**trainer["privacy"], "delta": 1}, "delta=1 must be a number > 0 and < 1"),
                              ("privacy", {**trainer["privacy"], "enabled": "yes"}, "enabled='yes' must be true or false")]:
        with pytest.raises(ConfigError, match=re.escape(named)):
            Settings.from_trainer({**trainer, key: value}, seed=0)
        Settings.from_trainer({**trainer, key: value, "privacy": {**trainer["privacy"], "enabled": False}}, seed=0)
    with pytest.raises(ConfigError, match=r"can't train model\.norm=batch \(model\.arch=cnn\): BatchNorm mixes"):
        check_model({"arch": "cnn", "norm": "batch"}, Settings.from_trainer(trainer, seed=0).privacy)
    check_rows(1257, Privacy(target_epsilon=3, delta=1e-5, max_grad_norm=1))
    with pytest.raises(ConfigError, match=r"delta=0\.001 must be below 1 / \(training rows\) = 1/1257"):
        check_rows(1257, Privacy(target_epsilon=3, delta=1e-3, max_grad_norm=1))


def test_group_norm_is_opacus_own_fix_and_only_reproducible_fixes_train():
    """model.norm=group builds what ModuleValidator.fix makes of the BatchNorm model; a model Opacus must
    swap modules in trains only if the swap stores the config-built model's weights (lstm yes, transformer no)."""
    import torch
    from opacus.validators import ModuleValidator

    from maas.backends.torch import private
    from maas.models.torch import CNN, RowLSTM, Transformer

    fixed, group = ModuleValidator.fix(CNN(norm="batch")), CNN(norm="group")
    assert {n: type(m) for n, m in fixed.named_modules()} == {n: type(m) for n, m in group.named_modules()}
    assert {k: v.shape for k, v in fixed.state_dict().items()} == {k: v.shape for k, v in group.state_dict().items()}
    assert private.trainable(group, np.zeros((2, 1, 8, 8), np.float32), "cnn") is group  # nothing to swap

    probe = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    lstm = RowLSTM(layers=2)
    swapped = private.trainable(lstm, probe, "lstm")
    assert swapped is not lstm and type(swapped.rnn).__name__ == "DPLSTM"
    rebuilt = RowLSTM(layers=2)
    rebuilt.load_state_dict(private.config_state(swapped.state_dict(), rebuilt))
    x = torch.from_numpy(probe)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), swapped.eval()(x), atol=1e-5)
    with pytest.raises(ConfigError, match=r"model\.arch=transformer: .*stores no weight named .*in_proj_weight"):
        private.trainable(Transformer(), probe, "transformer")
