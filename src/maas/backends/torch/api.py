"""The torch backend: architectures by name, weights as named numpy arrays, predict, train."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from maas.backends.base import BLOCK_ROWS, Prediction, TrainResult, predict_in_blocks
from maas.errors import ArtifactError, ConfigError

OUTPUT_CHANNEL_AXIS = 0  # torch kernels are (out, in, ...)


def build(model_cfg) -> torch.nn.Module:
    from maas.models import build_model

    return build_model(model_cfg, backend="torch")


def get_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def set_weights(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> None:
    try:
        model.load_state_dict({k: torch.from_numpy(np.require(v, requirements="C")) for k, v in weights.items()})
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors, all named by torch
        raise ArtifactError(f"stored weights don't fit the architecture: {e}") from None
    model.eval()


class TorchPredictor:
    """Probabilities (and anomaly scores) in blocks of `rows` rows (backends.base.predict_in_blocks)."""

    def __init__(self, model: torch.nn.Module, rows: int = BLOCK_ROWS):
        self.model = model.eval()
        self.rows = rows
        self.scores_anomalies = hasattr(self.model, "anomaly_score")

    @torch.no_grad()
    def _forward(self, block: np.ndarray):
        xb = torch.from_numpy(block)
        proba = torch.softmax(self.model(xb).float(), dim=1).numpy()
        return proba, self.model.anomaly_score(xb).float().numpy() if self.scores_anomalies else None

    def predict(self, x: np.ndarray) -> Prediction:
        return predict_in_blocks(x, self._forward, self.scores_anomalies, self.rows)


def predictor(model: torch.nn.Module, rows: int = BLOCK_ROWS) -> TorchPredictor:
    return TorchPredictor(model, rows)


def train(cfg: DictConfig, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
          log: Callable[[int, dict], None]) -> TrainResult:
    """Fit `cfg.model` with `cfg.trainer` on the torch side; every setting is checked before training."""
    from omegaconf import OmegaConf

    from maas.backends.torch import resume
    from maas.backends.torch.device import autocast, pick_device
    from maas.backends.base import Settings
    from maas.backends.torch.fit import fit
    from maas.backends.torch.optim import make_optimizer

    from maas import distributed
    from maas.backends.torch import ddp
    from maas.data.split_files import split_files

    t = cfg.trainer
    device = ddp.setup(t.device) if distributed.in_worker() else pick_device(t.device)
    autocast(device, t.precision)
    plain = OmegaConf.to_container(t, resolve=True)
    settings = Settings.from_trainer(plain, seed=cfg.seed)
    torch.manual_seed(cfg.seed)  # weight init draws from the global generator: seed it first
    model = build(cfg.model)
    if cfg.model.get("init_from"):
        init_from(model, cfg.model.init_from)
    freeze(model, list(t.freeze))
    trained = model
    if settings.privacy is not None:
        from maas.backends.privacy import check_model
        from maas.backends.torch import private

        check_model(OmegaConf.to_container(cfg.model, resolve=True), settings.privacy)
        trained = private.trainable(model, val[0][:BLOCK_ROWS], cfg.model.arch)  # model itself, or Opacus's fix of it
    make_optimizer([torch.nn.Parameter(torch.zeros(1))], settings.optimizer)  # bad arguments fail here, not mid-run
    say = print if distributed.is_main() else (lambda *args, **kwargs: None)
    say(f"train: building model <{cfg.model.arch}>, optimizer <{settings.optimizer['name']}>, "
          f"scheduler <{settings.scheduler['name']}>", flush=True)
    state_dir = None
    if t.resume:
        fp = resume.fingerprint({k: plain_cfg(cfg, k) for k in ("seed", "model", "trainer", "data")},
                                [f for split in ("train", "val") for f in split_files(cfg.paths.processed, split)])
        state_dir = Path(cfg.paths.checkpoints) / f"train-{fp}"
    try:
        result = fit(trained, train, val, settings=settings, device=device, state_dir=state_dir, log=log)
    finally:
        ddp.teardown()
    if result.best_state:
        model.load_state_dict(result.best_state if trained is model else private.config_state(result.best_state, model))
    if state_dir is not None and distributed.is_main():
        resume.clear(state_dir)  # finished: the next run with this config is a new run
    return TrainResult(model=model.cpu().eval(), best_epoch=result.best_epoch,
                       best_val_accuracy=result.best_val_accuracy, history=result.history,
                       record={"device": str(device), "precision": t.precision, "processes": distributed.world_size(),
                               **({"privacy": result.privacy} if result.privacy else {})})


def plain_cfg(cfg: DictConfig, key: str):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key)
    if key == "trainer":  # whether to resume does not change what training computes
        value = {k: v for k, v in OmegaConf.to_container(value, resolve=True).items() if k != "resume"}
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def init_from(model: torch.nn.Module, source: str) -> None:
    """Start from earlier weights: a maas model directory or a safetensors file, shapes checked."""
    from maas import model_files

    weights = model_files.read_init_weights(source, "torch")
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    wrong = [f"{k} {list(weights[k].shape)} vs {list(own[k].shape)}"
             for k in sorted(set(own) & set(weights)) if tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        raise ConfigError(f"model.init_from={source} does not fit model.arch={type(model).__name__}: "
                          + "; ".join(part for part in (
                              f"shapes differ: {', '.join(wrong[:5])}" if wrong else "",
                              f"missing: {', '.join(missing[:5])}" if missing else "",
                              f"unexpected: {', '.join(extra[:5])}" if extra else "") if part))
    model.load_state_dict({k: torch.from_numpy(np.require(v, requirements="C")) for k, v in weights.items()})
    print(f"train: initialised {len(weights)} tensors from {source}", flush=True)


def freeze(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Keep the parameters under each dotted prefix fixed."""
    from maas.backends.base import frozen_names

    frozen = frozen_names([n for n, _ in model.named_parameters()], prefixes, type(model).__name__)
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
