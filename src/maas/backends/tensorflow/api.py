"""The TensorFlow backend: Keras 3 architectures by name, weights as named numpy arrays, predict, train.

The same functions as `maas.backends.torch.api`, so stages, the Bento and
benchmarks never import TensorFlow themselves. Inputs are NCHW float32, as
everywhere in maas; each Keras model transposes to NHWC as its first step.
Weights travel as numpy arrays named by their Keras variable paths without the
model's own name (`features.0.kernel`, `rnn.0.lstm_cell.recurrent_kernel`),
stored by `maas.model_files` in safetensors: no pickle, no `.keras` archive,
and the architecture is rebuilt from model.yaml through maas's own table.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from omegaconf import DictConfig

from maas.backends.base import BLOCK_ROWS, Prediction, TrainResult, predict_in_blocks
from maas.backends.tensorflow import keras as _keras
from maas.errors import ArtifactError, ConfigError

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the environment is set for it)

OUTPUT_CHANNEL_AXIS = -1  # Keras kernels are (..., in, out)


def build(model_cfg) -> "keras.Model":
    from maas.models import build_model

    return build_model(model_cfg, backend="tensorflow")


def _names(model) -> list[tuple[str, object]]:
    """(name, variable) for every weight, named by its path inside the model."""
    prefix = f"{model.name}/"
    named = [(v.path[len(prefix):] if v.path.startswith(prefix) else v.path, v) for v in model.weights]
    named = [(name.replace("/", "."), v) for name, v in named]
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:  # a family that forgot to name a layer; never a user's error
            raise ArtifactError(f"{model.name}: two weights share the name {name!r}")
        seen.add(name)
    return named


def get_weights(model) -> dict[str, np.ndarray]:
    return {name: np.asarray(v.numpy()) for name, v in _names(model)}


def _mismatch(model, weights: dict[str, np.ndarray]) -> str:
    own = dict(_names(model))
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    wrong = [f"{k} {list(np.shape(weights[k]))} vs {list(own[k].shape)}"
             for k in sorted(set(own) & set(weights)) if tuple(np.shape(weights[k])) != tuple(own[k].shape)]
    return "; ".join(part for part in (
        f"shapes differ (stored vs architecture): {', '.join(wrong[:5])}" if wrong else "",
        f"missing: {', '.join(missing[:5])}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        if missing else "",
        f"unexpected: {', '.join(extra[:5])}" + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        if extra else "") if part)


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Load every weight by name; a missing, unexpected or mis-shaped array is named, nothing is half-loaded."""
    problem = _mismatch(model, weights)
    if problem:
        raise ArtifactError(f"stored weights don't fit the {model.name} architecture: {problem}")
    for name, v in _names(model):
        v.assign(np.asarray(weights[name], dtype=v.dtype))


class KerasPredictor:
    """Probabilities (and the autoencoder's anomaly scores) for NCHW float32 batches, in inference mode.

    int8_weights models run as fp32 here: the stored int8 weights are dequantized on load. The
    TensorFlow int8 paths that run int8 kernels are the TFLite variants (tflite_dynamic, tflite_int8).
    """

    def __init__(self, model, rows: int = BLOCK_ROWS):
        self.model = model
        self.rows = rows
        self.scores_anomalies = hasattr(model, "anomaly_score")
        shape = (None, *model.maas_input_shape) if len(model.maas_input_shape) == 3 else None
        spec = [tf.TensorSpec(shape, tf.float32)] if shape else None

        @tf.function(input_signature=spec, reduce_retracing=True)
        def run(x):
            proba = tf.nn.softmax(tf.cast(model(x, training=False), tf.float32), axis=-1)
            anomaly = model.anomaly_score(x) if self.scores_anomalies else tf.zeros((tf.shape(x)[0],))
            return proba, anomaly

        self._run = run

    def _forward(self, block: np.ndarray):
        proba, anomaly = self._run(tf.constant(block))
        return proba.numpy(), anomaly.numpy()

    def predict(self, x: np.ndarray) -> Prediction:
        return predict_in_blocks(x, self._forward, self.scores_anomalies, self.rows)


def predictor(model, rows: int = BLOCK_ROWS) -> KerasPredictor:
    return KerasPredictor(model, rows)


def train(cfg: DictConfig, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
          log: Callable[[int, dict], None]) -> TrainResult:
    """Fit `cfg.model` with `cfg.trainer` in Keras on TensorFlow; every setting is checked before training."""
    from omegaconf import OmegaConf

    from maas.backends.base import Settings
    from maas.backends.tensorflow.fit import fit, make_optimizer, make_schedule, pick_device, precision_policy

    t = cfg.trainer
    device = pick_device(t.device)
    policy = precision_policy(t.precision, device)
    plain = OmegaConf.to_container(t, resolve=True)
    settings = Settings.from_trainer(plain, seed=cfg.seed)
    make_optimizer(settings.optimizer, 1.0, grad_clip_norm=settings.grad_clip_norm)  # bad arguments fail here
    make_schedule(settings.scheduler, settings.optimizer["lr"], steps_per_epoch=1, epochs=settings.epochs)
    if t.get("resume"):
        print("train: trainer.resume is not implemented for the tensorflow backend; starting fresh", flush=True)
    keras.utils.set_random_seed(cfg.seed)  # weight init draws from the global seed: seed it first
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        with tf.device(device):
            model = build(cfg.model)
            if cfg.model.get("init_from"):
                init_from(model, cfg.model.init_from)
            frozen = freeze_names(model, list(t.get("freeze") or []))
            print(f"train: building model <{cfg.model.arch}> (keras {keras.__version__}, tensorflow "
                  f"{tf.__version__}), optimizer <{settings.optimizer['name']}>, scheduler "
                  f"<{settings.scheduler['name']}>", flush=True)
            result = fit(model, train, val, settings=settings, device=device, frozen=frozen, log=log)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    if policy != "float32":  # hand back a float32 model: predicting never depends on how it was trained
        fp32 = build(cfg.model)
        set_weights(fp32, result.best_weights or get_weights(model))
        model = fp32
    elif result.best_weights:
        set_weights(model, result.best_weights)
    return TrainResult(model=model, best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
                       history=result.history,
                       record={"device": device, "precision": t.precision,
                               "framework": f"keras {keras.__version__} / tensorflow {tf.__version__}"})


def init_from(model, source: str) -> None:
    """Start from earlier weights: a tensorflow maas model directory or a safetensors file, names and shapes checked."""
    from maas import model_files

    weights = model_files.read_init_weights(source, "tensorflow")
    problem = _mismatch(model, weights)
    if problem:
        raise ConfigError(f"model.init_from={source} does not fit model.arch={model.name}: {problem}")
    set_weights(model, weights)
    print(f"train: initialised {len(weights)} arrays from {source}", flush=True)


def freeze_names(model, prefixes: list[str]) -> set[str]:
    """Names of the trainable weights under each dotted prefix."""
    from maas.backends.base import frozen_names

    return frozen_names([name for name, v in _names(model) if v.trainable], prefixes, model.name)
