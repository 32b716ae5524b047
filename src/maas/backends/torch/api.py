"""The torch backend: architectures by name, weights as named numpy arrays, predict, train."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from maas.backends.base import Prediction, TrainResult
from maas.errors import ArtifactError, ConfigError

OUTPUT_CHANNEL_AXIS = 0  # torch kernels are (out, in, ...)


def build(model_cfg) -> torch.nn.Module:
    from maas.models import build_model

    return build_model(model_cfg, backend="torch")


def get_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def set_weights(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> None:
    try:
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors, all named by torch
        raise ArtifactError(f"stored weights don't fit the architecture: {e}") from None
    model.eval()


class TorchPredictor:
    def __init__(self, model: torch.nn.Module, compression: str):
        from maas.compression.int8_dynamic import dynamic_linear

        self.model = dynamic_linear(model) if compression == "int8_dynamic" else model.eval()
        self.scores_anomalies = hasattr(self.model, "anomaly_score")

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch_size: int = 512) -> Prediction:
        proba, anomaly = [], []
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))
            proba.append(torch.softmax(self.model(xb).float(), dim=1).numpy())
            if self.scores_anomalies:
                anomaly.append(self.model.anomaly_score(xb).float().numpy())
        if not proba:
            raise ValueError("predict needs at least one input")
        return Prediction(np.concatenate(proba), np.concatenate(anomaly) if anomaly else None)


def predictor(model: torch.nn.Module, compression: str = "none") -> TorchPredictor:
    return TorchPredictor(model, compression)


def train(cfg: DictConfig, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
          log: Callable[[int, dict], None]) -> TrainResult:
    """Fit `cfg.model` with `cfg.trainer` on the torch side; every setting is checked before training."""
    import hydra.utils

    from maas.backends.torch.device import autocast, pick_device
    from maas.backends.torch.fit import fit

    t = cfg.trainer
    device = pick_device(t.device)
    autocast(device, t.precision)
    torch.manual_seed(cfg.seed)  # weight init draws from the global generator: seed it first
    model = build(cfg.model)
    try:
        make_optimizer = hydra.utils.instantiate(t.optimizer)
        make_optimizer(model.parameters())  # a throwaway, so bad arguments fail here
    except Exception as e:  # Hydra wraps import and argument errors alike
        raise ConfigError(f"cannot build trainer.optimizer ({t.optimizer.get('_target_')}): {e}") from e
    print(f"train: building model <{cfg.model.arch}>, optimizer <{t.optimizer._target_}>", flush=True)
    result = fit(model, train, val, make_optimizer=make_optimizer, device=device,
                 precision=t.precision, epochs=t.epochs, batch_size=t.batch_size,
                 warmup_epochs=t.warmup_epochs, min_lr_ratio=t.min_lr_ratio, seed=cfg.seed,
                 augment_shift=t.augment_shift, log=log)
    if result.best_state:
        model.load_state_dict(result.best_state)
    return TrainResult(model=model.cpu().eval(), best_epoch=result.best_epoch,
                       best_val_accuracy=result.best_val_accuracy, history=result.history,
                       record={"device": str(device), "precision": t.precision})
