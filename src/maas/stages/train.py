"""train: fit the configured model on the train split, keep the best epoch on val.

Per-epoch metrics go to DVCLive (`reports/train/`), so `dvc plots show` draws them.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.config import choice
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
    from maas.backends.torch.device import pick_device
    from maas.backends.torch.fit import fit
    from maas.models import build_model

    choice(cfg, "trainer.backend", BACKENDS)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    device = pick_device(cfg.trainer.device)
    torch.manual_seed(cfg.seed)  # weight init draws from the global generator: seed it first
    model = build_model(cfg.model)
    print(f"train: instantiating model <{cfg.model._target_}>, optimizer <{cfg.trainer.optimizer._target_}>",
          flush=True)
    t = cfg.trainer
    with Live(str(Path(cfg.paths.reports) / LIVE_DIR), dvcyaml=None, save_dvc_exp=False) as live:
        live.log_params({"model": OmegaConf.to_container(cfg.model), "seed": cfg.seed})

        def log(epoch: int, metrics: dict) -> None:
            for k, v in metrics.items():
                live.log_metric(k, v)
            live.next_step()

        result = fit(model, train, val, make_optimizer=hydra.utils.instantiate(t.optimizer), device=device,
                     precision=t.precision, epochs=t.epochs, batch_size=t.batch_size,
                     warmup_epochs=t.warmup_epochs, min_lr_ratio=t.min_lr_ratio, seed=cfg.seed,
                     augment_shift=t.augment_shift, log=log)
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
    params=("seed", "model", "trainer"),
    code=("src/maas/stages/train.py", "src/maas/backends", "src/maas/models"),
    metrics=("{paths.reports}/train/metrics.json",),
    plots=("{paths.reports}/train/plots/metrics",),
)
