"""train: fit the configured model on the train split, keep the best epoch on val.

Per-epoch metrics go to DVCLive (`reports/train/`), so `dvc plots show` draws them.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.config import choice
from maas.errors import ConfigError, TrainingFailed
from maas.stages import Stage, stage_entry
from maas.stages.preprocess import load_split

LIVE_DIR = "train"  # inside paths.reports


@stage_entry("train")
def run(cfg: DictConfig) -> dict:
    import hydra.utils
    import torch
    from dvclive import Live

    from maas.backends import BACKENDS
    from maas.backends.torch.checkpoint import write_model_dir
    from maas.backends.torch.device import autocast, pick_device
    from maas.backends.torch.fit import fit
    from maas.models import build_model

    t = cfg.trainer
    # Every config error surfaces here, before anything (old reports included) is touched.
    choice(cfg, "trainer.backend", BACKENDS)
    for key, low in (("epochs", 1), ("batch_size", 1), ("augment_shift", 0)):
        if not isinstance(t[key], int) or t[key] < low:
            raise ConfigError(f"trainer.{key}={t[key]!r} must be an integer >= {low}")
    device = pick_device(t.device)
    autocast(device, t.precision)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    torch.manual_seed(cfg.seed)  # weight init draws from the global generator: seed it first
    model = build_model(cfg.model)
    try:
        make_optimizer = hydra.utils.instantiate(t.optimizer)
        make_optimizer(model.parameters())  # a throwaway, so bad arguments fail here
    except Exception as e:  # Hydra wraps import and argument errors alike
        raise ConfigError(f"cannot build trainer.optimizer ({t.optimizer.get('_target_')}): {e}") from e
    print(f"train: building model <{cfg.model.arch}>, optimizer <{t.optimizer._target_}>", flush=True)
    # DVCLive clears its folder on start; give it a temp one so a failed run keeps the last reports.
    with io.atomic_dir(Path(cfg.paths.reports) / LIVE_DIR) as live_dir, \
            Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        live.log_params({"model": OmegaConf.to_container(cfg.model), "seed": cfg.seed})

        def log(epoch: int, metrics: dict) -> None:
            for k, v in metrics.items():
                live.log_metric(k, v)
            live.next_step()

        result = fit(model, train, val, make_optimizer=make_optimizer, device=device,
                     precision=t.precision, epochs=t.epochs, batch_size=t.batch_size,
                     warmup_epochs=t.warmup_epochs, min_lr_ratio=t.min_lr_ratio, seed=cfg.seed,
                     augment_shift=t.augment_shift, log=log)
        if result.best_epoch < 0:
            raise TrainingFailed(f"validation loss was never finite in {t.epochs} epoch(s): "
                                 "the model diverged; lower trainer.optimizer.lr")
        live.summary = {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy}

    spec = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "input_shape": list(cfg.data.image_shape),
        "classes": list(range(cfg.data.num_classes)),
        "compression": {"method": "none"},
        "training": {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                     "epochs": t.epochs, "device": str(device), "precision": t.precision},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    with io.atomic_dir(cfg.paths.trained) as out:
        write_model_dir(out, state=result.best_state, spec=spec)
    return {"best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
            "model_dir": str(cfg.paths.trained)}


STAGE = Stage(
    name="train",
    run=run,
    deps=("{paths.processed}",),
    outs=("{paths.trained}", "{paths.reports}/train"),
    params=("seed", "model", "trainer", "data.image_shape", "data.num_classes"),
    code=("src/maas/stages/train.py", "src/maas/backends", "src/maas/models"),
    metrics=("{paths.reports}/train/metrics.json",),
    plots=("{paths.reports}/train/plots/metrics",),
)
