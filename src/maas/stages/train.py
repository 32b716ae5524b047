"""train: fit the configured model on the train split, keep the best epoch on val.

Per-epoch metrics go to DVCLive (`reports/train/`), so `dvc plots show` draws them.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.checks import choice
from maas.errors import TrainingFailed
from maas.stages import Stage, stage_entry, tracked_config
from maas.stages.preprocess import load_split

LIVE_DIR = "train"  # inside paths.reports


@stage_entry("train")
def run(cfg: DictConfig) -> dict:
    from dvclive import Live

    from maas import backends, distributed, model_files
    from maas.backends.base import Settings

    t = cfg.trainer
    # Every config error surfaces here, before anything (old reports included) is touched.
    backend = backends.get(choice(cfg, "trainer.backend", backends.BACKENDS))
    nproc = Settings.from_trainer(OmegaConf.to_container(t, resolve=True), seed=cfg.seed).nproc
    if nproc > 1 and not distributed.in_worker():
        distributed.launch(cfg, "train", nproc)  # rank 0 of the launched processes writes the outputs
        spec = model_files.read_spec(cfg.paths.trained)["training"]
        return {"best_val_loss": spec["best_val_loss"], "best_val_accuracy": spec["best_val_accuracy"],
                "best_epoch": spec["best_epoch"], "model_dir": str(cfg.paths.trained), "processes": nproc}
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    if not distributed.is_main():  # the other ranks train their shard and write nothing
        backend.train(cfg, train, val, log=lambda epoch, metrics: None)
        return {"rank": distributed.rank()}
    # DVCLive clears its folder on start; give it a temp one so a failed run keeps the last reports.
    with io.atomic_dir(Path(cfg.paths.reports) / LIVE_DIR) as live_dir, \
            Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        live.log_params({"model": OmegaConf.to_container(cfg.model), "seed": cfg.seed})

        def log(epoch: int, metrics: dict) -> None:
            for k, v in metrics.items():
                live.log_metric(k, v)
            live.next_step()

        result = backend.train(cfg, train, val, log=log)
        if result.best_epoch < 0:
            raise TrainingFailed(f"validation loss was never finite in {t.epochs} epoch(s): "
                                 "the model diverged; lower trainer.optimizer.lr")
        # The loss the best epoch was chosen on: what a sweep minimizes (the Stage's objective).
        best_val_loss = next(h["val_loss"] for h in result.history if h["epoch"] == result.best_epoch)
        live.summary = {"best_epoch": result.best_epoch, "best_val_loss": best_val_loss,
                        "best_val_accuracy": result.best_val_accuracy}
        if "privacy" in result.record:  # the (epsilon, delta) spent, beside the metrics `dvc metrics show` lists
            live.summary |= {k: result.record["privacy"][k] for k in ("epsilon", "delta")}

    spec = {
        "backend": t.backend,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "input_shape": list(cfg.data.input_shape),
        "classes": list(range(cfg.data.num_classes)),
        "compression": {"method": "none"},
        "training": {"best_epoch": result.best_epoch, "best_val_loss": best_val_loss,
                     "best_val_accuracy": result.best_val_accuracy,
                     "epochs": t.epochs, **result.record},
        "config": tracked_config(cfg, STAGE.params),  # only what DVC tracks for train: dvc.lock reproduces
    }
    with io.atomic_dir(cfg.paths.trained) as out:
        model_files.write_model_dir(out, weights=backend.get_weights(result.model), spec=spec)
    return {"best_val_loss": best_val_loss, "best_val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch, "model_dir": str(cfg.paths.trained)}


STAGE = Stage(
    name="train",
    run=run,
    deps=("{paths.processed}",),
    outs=("{paths.trained}", "{paths.reports}/train"),
    params=("seed", "model", "trainer", "data.input_shape", "data.num_classes"),
    metrics=("{paths.reports}/train/metrics.json",),
    objective="best_val_loss",
    plots=("{paths.reports}/train/plots/metrics",),
)
