"""The Keras training loop on TensorFlow, all on one page; the twin of maas.backends.torch.fit.

    maas stage train trainer.backend=tensorflow
    maas stage train trainer.backend=tensorflow model=lstm trainer/optimizer=sgd trainer/scheduler=plateau

One compiled (tf.function) step per batch, driven from Python so the epoch
logic reads like the torch loop: same shuffling and random-shift augmentation
(numpy, seeded), same schedules, same selection of the epoch with the lowest
validation loss, same progress lines. maas's optimizer and scheduler names map
to Keras classes in the tables below; a config never carries an import path.

Semantics kept equal to torch's: `adam`/`sgd` weight decay is an L2 term on
the gradient (torch.optim.Adam/SGD), `adamw`'s is decoupled (Keras AdamW, same
update as torch.optim.AdamW); eps defaults to torch's 1e-8; warmup is linear
from lr/warmup_steps; plateau follows torch's ReduceLROnPlateau (relative
threshold 1e-4, reduce after more than `patience` bad epochs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from maas.backends.base import Settings
from maas.backends.tensorflow import keras as _keras
from maas.errors import ConfigError

keras = _keras()
import tensorflow as tf  # noqa: E402

PRECISIONS = {"32": "float32", "bf16-mixed": "mixed_bfloat16", "16-mixed": "mixed_float16"}

# maas name -> (Keras class, {maas argument: Keras argument}); weight_decay is handled per OPTIMIZER_DECAY.
OPTIMIZERS: dict[str, tuple[type, dict[str, str]]] = {
    "sgd": (keras.optimizers.SGD, {"lr": "learning_rate", "momentum": "momentum", "nesterov": "nesterov"}),
    "adam": (keras.optimizers.Adam, {"lr": "learning_rate", "eps": "epsilon", "amsgrad": "amsgrad"}),
    "adamw": (keras.optimizers.AdamW, {"lr": "learning_rate", "eps": "epsilon", "amsgrad": "amsgrad"}),
}
OPTIMIZER_DECAY = {"sgd": "l2", "adam": "l2", "adamw": "decoupled"}  # as torch.optim does it
SCHEDULERS = {"cosine": ("warmup_epochs", "min_lr_ratio"), "step": ("warmup_epochs", "step_epochs", "gamma"),
              "plateau": ("factor", "patience", "min_lr_ratio")}


def pick_device(requested: str = "auto") -> str:
    """A TensorFlow device name: `auto` takes the first GPU, else the CPU; a requested GPU must exist."""
    gpus = tf.config.list_physical_devices("GPU")
    value = str(requested).lower()
    if value == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if value == "cpu":
        return "/CPU:0"
    kind, _, index = value.partition(":")
    if kind in ("gpu", "cuda") and (index == "" or index.isdigit()):
        n = int(index or 0)
        if not gpus:
            raise ConfigError(f"trainer.device={requested} but TensorFlow sees no GPU (tensorflow-cpu is "
                              "installed; on a GPU machine install tensorflow[and-cuda]); use trainer.device=auto or cpu")
        if n >= len(gpus):
            raise ConfigError(f"trainer.device={requested} but TensorFlow sees only {len(gpus)} GPU(s)")
        return f"/GPU:{n}"
    raise ConfigError(f"trainer.device={requested!r} is not allowed with trainer.backend=tensorflow; "
                      "use auto, cpu, gpu, gpu:N (cuda, cuda:N mean the same)")


def precision_policy(precision: str, device: str) -> str:
    """The Keras dtype policy for trainer.precision (16-mixed needs a GPU, as in torch)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not allowed; choose one of {list(PRECISIONS)}")
    if precision == "16-mixed" and not device.startswith("/GPU"):
        raise ConfigError("trainer.precision=16-mixed needs a GPU; use bf16-mixed on CPU")
    return PRECISIONS[precision]


def make_optimizer(cfg: dict[str, Any], steps_or_schedule, *, grad_clip_norm: float = 0.0):
    """The Keras optimizer for trainer.optimizer, its learning rate `steps_or_schedule` (a number or a
    schedule), and the L2 coefficient the loss must add (torch's coupled weight decay; 0 for adamw)."""
    kwargs = dict(cfg)
    name = kwargs.pop("name", None)
    if name not in OPTIMIZERS:
        raise ConfigError(f"trainer.optimizer.name={name!r} is not allowed; choose one of {list(OPTIMIZERS)}")
    cls, mapping = OPTIMIZERS[name]
    accepted = {*mapping, "weight_decay"} | ({"betas"} if name != "sgd" else set())
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"trainer.optimizer.{unknown[0]} is not an argument of {name} "
                          f"(arguments: {', '.join(sorted(accepted))})")
    lr, decay = kwargs.get("lr"), kwargs.pop("weight_decay", 0.0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"trainer.optimizer.lr={lr!r} must be a number > 0")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
        raise ConfigError(f"trainer.optimizer.weight_decay={decay!r} must be a number >= 0")
    args: dict[str, Any] = {mapping[k]: v for k, v in kwargs.items() if k in mapping}
    args["learning_rate"] = steps_or_schedule
    if name != "sgd":
        args.setdefault("epsilon", 1e-8)
        betas = kwargs.get("betas", (0.9, 0.999))
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"trainer.optimizer.betas={betas!r} must be two numbers in [0, 1)")
        args["beta_1"], args["beta_2"] = float(betas[0]), float(betas[1])
    elif not (isinstance(args.get("momentum", 0.0), (int, float)) and 0 <= args.get("momentum", 0.0) < 1):
        raise ConfigError(f"trainer.optimizer.momentum={args['momentum']!r} must be a number in [0, 1)")
    if OPTIMIZER_DECAY[name] == "decoupled":
        args["weight_decay"] = float(decay)
    if grad_clip_norm > 0:
        args["global_clipnorm"] = float(grad_clip_norm)
    try:
        optimizer = cls(**args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"trainer.optimizer ({name}): {e}") from e
    return optimizer, (float(decay) if OPTIMIZER_DECAY[name] == "l2" else 0.0)


class StepAfterWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from lr/warmup_steps, then lr * gamma ** (steps after warmup // step_steps)."""

    def __init__(self, lr: float, warmup_steps: int, step_steps: int, gamma: float):
        self.lr, self.warmup_steps, self.step_steps, self.gamma = lr, warmup_steps, step_steps, gamma

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        w = float(max(1, self.warmup_steps))
        warm = self.lr * (1.0 / w + (1.0 - 1.0 / w) * step / w)
        decayed = self.lr * tf.pow(self.gamma, tf.floor(tf.maximum(step - self.warmup_steps, 0.0) / self.step_steps))
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"lr": self.lr, "warmup_steps": self.warmup_steps, "step_steps": self.step_steps, "gamma": self.gamma}


class Plateau:
    """torch's ReduceLROnPlateau(mode="min"): lr *= factor after more than `patience` epochs
    without a val loss below best * (1 - 1e-4), never below min_lr."""

    def __init__(self, factor: float, patience: int, min_lr: float):
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.best, self.bad = math.inf, 0

    def step(self, optimizer, val_loss: float) -> None:
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            lr = float(optimizer.learning_rate)
            new = max(lr * self.factor, self.min_lr)
            if lr - new > 1e-8:
                optimizer.learning_rate = new
            self.bad = 0


def make_schedule(cfg: dict[str, Any], lr: float, *, steps_per_epoch: int, epochs: int):
    """(learning rate or Keras schedule for the optimizer, Plateau to step per epoch or None)."""
    name = cfg.get("name")
    if name not in SCHEDULERS:
        raise ConfigError(f"trainer.scheduler.name={name!r} is not allowed; choose one of {list(SCHEDULERS)}")
    unknown = sorted(set(cfg) - {"name", *SCHEDULERS[name]})
    missing = [k for k in SCHEDULERS[name] if k not in cfg]
    if unknown or missing:
        key = (unknown or missing)[0]
        raise ConfigError(f"trainer.scheduler.{key} is {'not an argument' if unknown else 'required'} of {name} "
                          f"(arguments: {', '.join(SCHEDULERS[name])})")
    for key in SCHEDULERS[name]:
        value = cfg[key]
        integer = key in ("warmup_epochs", "step_epochs", "patience")
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        low = 1 if key == "step_epochs" else 0
        if isinstance(value, bool) or not ok or value < low or (key in ("min_lr_ratio", "factor", "gamma") and value > 1):
            raise ConfigError(f"trainer.scheduler.{key}={value!r} must be {'an integer' if integer else 'a number'} "
                              f">= {low}" + (" and <= 1" if key in ("min_lr_ratio", "factor", "gamma") else ""))
    warmup = int(cfg.get("warmup_epochs", 0)) * steps_per_epoch
    total = epochs * steps_per_epoch
    if name == "cosine":
        sched = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / warmup if warmup else lr, decay_steps=max(1, total - warmup),
            alpha=float(cfg["min_lr_ratio"]), warmup_target=lr if warmup else None, warmup_steps=warmup)
        return sched, None
    if name == "step":
        return StepAfterWarmup(lr, warmup, int(cfg["step_epochs"]) * steps_per_epoch, float(cfg["gamma"])), None
    return float(lr), Plateau(float(cfg["factor"]), int(cfg["patience"]), lr * float(cfg["min_lr_ratio"]))


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each NCHW image by up to `max_shift` pixels each way, repeating the edge pixels
    (clamped index grids, one gather for the batch; as torch's fit.random_shift)."""
    b, _, h, w = x.shape
    # A table row is a (1, 1, width) "image" whose columns are features, not neighbouring pixels.
    if max_shift <= 0 or h == 1:
        return x
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, b))
    rows = np.clip(np.arange(h)[None, :] + dy[:, None], 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + dx[:, None], 0, w - 1)
    # Advanced indices around a slice put their (b, h, w) dims first: (b, h, w, C) -> NCHW.
    return np.ascontiguousarray(x[np.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
                                .transpose(0, 3, 1, 2))


@dataclass
class FitResult:
    best_weights: dict[str, np.ndarray]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def fit(model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
        settings: Settings, device: str, frozen: set[str] = frozenset(),
        log: Callable[[int, dict], None] = lambda epoch, metrics: None) -> FitResult:
    from maas.backends.tensorflow.api import _names, get_weights

    s = settings
    rng = np.random.default_rng(s.seed)
    x_train, y_train = np.asarray(train[0], np.float32), np.asarray(train[1], np.int64)
    x_val, y_val = np.asarray(val[0], np.float32), np.asarray(val[1], np.int64)
    steps_per_epoch = math.ceil(len(x_train) / s.batch_size)
    lr_or_schedule, plateau = make_schedule(s.scheduler, float(s.optimizer["lr"]),
                                            steps_per_epoch=steps_per_epoch, epochs=s.epochs)
    optimizer, l2 = make_optimizer(s.optimizer, lr_or_schedule, grad_clip_norm=s.grad_clip_norm)
    if s.precision == "16-mixed":  # fp16 gradients underflow without loss scaling; bf16 needs none
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trainable = [v for name, v in _names(model) if v.trainable and name not in frozen]
    optimizer.build(trainable)
    n_params = sum(int(np.prod(v.shape)) for v in model.weights if v.trainable)
    print(f"train: {len(x_train):,} samples, {steps_per_epoch} steps/epoch, {s.epochs * steps_per_epoch:,} steps, "
          f"{sum(int(np.prod(v.shape)) for v in trainable):,} trainable of {n_params:,} parameters, "
          f"device={device}, precision={s.precision}", flush=True)

    joint = getattr(model, "joint_loss", None)
    spec_x = tf.TensorSpec((None, *x_train.shape[1:]), tf.float32)
    spec_y = tf.TensorSpec((None,), tf.int64)

    def classifier_loss(logits, y, smoothing: float):
        logits = tf.cast(logits, tf.float32)
        target = tf.one_hot(y, tf.shape(logits)[-1])
        return tf.reduce_mean(keras.losses.categorical_crossentropy(target, logits, from_logits=True,
                                                                    label_smoothing=smoothing))

    @tf.function(input_signature=[spec_x, spec_y])
    def train_step(x, y):
        with tf.GradientTape() as tape:
            # The autoencoder brings its own joint loss (cross-entropy + reconstruction), as in torch.
            loss = joint(x, y, training=True) if joint else classifier_loss(model(x, training=True), y,
                                                                             s.label_smoothing)
            total = loss
            if l2:
                total += 0.5 * l2 * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in trainable])
            scaled = optimizer.scale_loss(total)
        optimizer.apply(tape.gradient(scaled, trainable), trainable)
        return loss

    @tf.function(input_signature=[spec_x, spec_y])
    def eval_step(x, y):
        logits = tf.cast(model(x, training=False), tf.float32)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, axis=-1) == y, tf.int64))
        return loss, correct

    def estimate_loss() -> tuple[float, float]:
        total, correct = 0.0, 0
        for i in range(0, len(x_val), 512):
            loss, ok = eval_step(tf.constant(x_val[i:i + 512]), tf.constant(y_val[i:i + 512]))
            total += float(loss)
            correct += int(ok)
        return total / len(x_val), correct / len(x_val)

    best, best_val_loss = FitResult({}, -1, -1.0), math.inf
    for epoch in range(1, s.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        running = 0.0
        for i in range(0, len(order), s.batch_size):
            idx = order[i:i + s.batch_size]
            xb = random_shift(x_train[idx], s.augment_shift, rng)
            loss = train_step(tf.constant(xb), tf.constant(y_train[idx]))
            running += float(loss) * len(idx)
        val_loss, val_acc = estimate_loss()
        lr = float(optimizer.learning_rate)
        if plateau is not None:
            plateau.step(optimizer, val_loss)
        metrics = {"train_loss": running / len(x_train), "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
        best.history.append({"epoch": epoch, **metrics})
        log(epoch, metrics)
        # Select on val loss, not accuracy, as the torch loop does (smoother on a few hundred images).
        if val_loss < best_val_loss:
            best_val_loss = val_loss
            best.best_weights = get_weights(model)
            best.best_epoch, best.best_val_accuracy = epoch, val_acc
        print(f"epoch {epoch:3d}/{s.epochs}  train_loss {metrics['train_loss']:.4f}  val_loss {val_loss:.4f}  "
              f"val_acc {val_acc:.4f}  lr {lr:.2e}  {time.perf_counter() - t0:.2f}s", flush=True)
        if 0 < s.early_stopping_patience <= epoch - max(best.best_epoch, 0):
            print(f"train: early stop after epoch {epoch}: val loss has not improved for "
                  f"{s.early_stopping_patience} epochs", flush=True)
            break
    print(f"train: best epoch {best.best_epoch} (val_loss {best_val_loss:.4f}, val_accuracy "
          f"{best.best_val_accuracy:.4f})", flush=True)
    return best
