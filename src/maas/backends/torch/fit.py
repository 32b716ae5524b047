"""The training loop, all on one page.

    maas stage train                       # as `dvc repro` runs it
    maas stage train trainer.epochs=5      # quick try, composes conf/
    maas stage train -m model.channels=16,32,64   # sweep
    maas stage train trainer/optimizer=sgd trainer/scheduler=plateau trainer.label_smoothing=0.1

Keeps the weights of the epoch with the lowest validation loss. After every
epoch the whole training state is saved (`resume.py`), so the same command
after a kill continues from the last finished epoch and, on CPU, ends with
the same weights as a run that was never interrupted. With
`trainer.privacy.enabled=true` the same loop runs DP-SGD (`private.py`):
Poisson-sampled batches, per-example clipping and noise, epsilon per epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from maas.backends.base import Settings
from maas.backends.torch import ddp, resume
from maas.backends.torch.device import autocast, grad_scaler
from maas.backends.torch.optim import make_optimizer, make_scheduler


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0              # the last finished epoch a killed run had saved (0: fresh)
    privacy: dict | None = None        # DP-SGD's record (private.Private.record): the epsilon spent, ...


@torch.no_grad()
def estimate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                  device: torch.device, precision: str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over (x, y), in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        with autocast(device, precision):
            logits = model(xb)
        total_loss += nn.functional.cross_entropy(logits.float(), yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / len(x), correct / len(x)


class Objective(nn.Module):
    """The training loss as one module, so DDP and torch.compile wrap the whole forward of a step.

    Cross-entropy, or the model's own joint loss (the autoencoder adds its reconstruction error).
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        joint = getattr(self.model, "joint_loss", None)
        if joint is not None:
            return joint(x, y)
        return nn.functional.cross_entropy(self.model(x).float(), y, label_smoothing=self.label_smoothing)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels each way, repeating the edge pixels.

    Clamping the index grid is replicate padding, done for the whole batch in one gather.
    """
    b, _, h, w = x.shape
    # A table row is a (1, 1, width) "image" whose columns are features, not neighbouring pixels.
    if max_shift <= 0 or h == 1:
        return x
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator))
    rows = (torch.arange(h)[None, :] + dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w)[None, :] + dx[:, None]).clamp(0, w - 1)
    batch = torch.arange(b)[:, None, None]
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
        settings: Settings, device: torch.device, state_dir: Path | None = None,
        log: Callable[[int, dict], None] = lambda epoch, metrics: None) -> FitResult:
    s = settings
    rank, world = ddp.rank_and_world()
    say = print if rank == 0 else (lambda *args, **kwargs: None)
    torch.manual_seed(s.seed)
    generator = torch.Generator().manual_seed(s.seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_val, y_val = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    memory_format = torch.channels_last if s.channels_last and x_train.dim() == 4 else torch.preserve_format
    model.to(device, memory_format=memory_format)
    net: nn.Module = Objective(model, s.label_smoothing)  # state dicts always come from `model`
    net = ddp.wrap(net, device) if world > 1 else net
    net = torch.compile(net) if s.compile else net
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, s.optimizer)
    # Each of `world` processes takes batch_size/world images a step: the global batch stays batch_size.
    batch = math.ceil(s.batch_size / world)
    steps_per_epoch = math.ceil(math.ceil(len(x_train) / world) / batch)
    dp = None
    if s.privacy is not None:  # settings refused DDP, compile, mixed precision and grad_clip_norm with it
        from maas.backends.torch import private

        dp = private.make_private(net, optimizer, rows=len(x_train), batch_size=s.batch_size, epochs=s.epochs,
                                  privacy=s.privacy, generator=generator)
        net, optimizer, steps_per_epoch = dp.net, dp.optimizer, dp.steps_per_epoch
    scheduler, step_on = make_scheduler(optimizer, s.scheduler, steps_per_epoch=steps_per_epoch, epochs=s.epochs)
    scaler = grad_scaler(device, s.precision)
    say(f"train: {len(x_train):,} samples, {steps_per_epoch} steps/epoch, {s.epochs * steps_per_epoch:,} steps, "
        f"{sum(p.numel() for p in trainable):,} trainable of {sum(p.numel() for p in model.parameters()):,} "
        f"parameters, device={device}, precision={s.precision}"
        + (f", {world} processes of {batch} images a step" if world > 1 else "")
        + (f", DP-SGD: noise multiplier {dp.optimizer.noise_multiplier:.3f}, per-example gradients clipped to "
           f"{s.privacy.max_grad_norm:g}, Poisson batches of {s.batch_size} expected, budget epsilon "
           f"{s.privacy.target_epsilon:g} at delta {s.privacy.delta:g} ({s.privacy.accountant} accountant)"
           if dp else ""), flush=True)

    best, best_val_loss, start = FitResult({}, -1, -1.0), math.inf, 1
    saved = resume.load(state_dir) if state_dir is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        generator.set_state(saved["generator"])
        if dp is not None:
            dp.load_state_dict(saved["privacy"])
        best_state = saved["best_state"] or {k: v.clone() for k, v in saved["model"].items()}
        best = FitResult(best_state, saved["best_epoch"], saved["best_val_accuracy"], saved["history"],
                         resumed_from=saved["epoch"])
        best_val_loss, start = saved["best_val_loss"], saved["epoch"] + 1
        for h in best.history:  # the new run's DVCLive folder gets the whole curve
            log(h["epoch"], {k: v for k, v in h.items() if k != "epoch"})
        say(f"train: resumed from epoch {saved['epoch']} (checkpoint in {state_dir})", flush=True)

    saver = resume.Saver(state_dir) if state_dir is not None and rank == 0 else None
    try:
        for epoch in range(start, s.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            if dp is not None:  # each row in each step with probability batch_size/rows
                batches = dp.batches()
            else:
                if world > 1:  # a DistributedSampler shard; augmentation drawn per process, reproducible per epoch
                    order = ddp.shard(len(x_train), epoch=epoch, seed=s.seed)
                    generator.manual_seed(s.seed * 1_000_003 + epoch * 1_009 + rank)
                else:
                    order = torch.randperm(len(x_train), generator=generator)
                batches = (order[i:i + batch] for i in range(0, len(order), batch))
            running, seen = 0.0, 0
            for idx in batches:
                xb = random_shift(x_train[idx], s.augment_shift, generator).to(device, memory_format=memory_format)
                yb = y_train[idx].to(device)
                with autocast(device, s.precision):
                    loss = net(xb, yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if s.grad_clip_norm > 0:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
                    nn.utils.clip_grad_norm_(trainable, s.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                if step_on == "batch":
                    scheduler.step()
                if len(idx):  # a Poisson batch can be empty: its mean loss is NaN, its noisy step still counts
                    running, seen = running + loss.item() * len(idx), seen + len(idx)
            # Every process scores the whole (small) val split with the same weights, so all agree on the best epoch.
            val_loss, val_acc = estimate_loss(model, x_val, y_val, batch_size=512, device=device, precision=s.precision)
            lr = optimizer.param_groups[0]["lr"]
            if step_on == "epoch":
                scheduler.step(val_loss)
            metrics = {"train_loss": running / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
            if dp is not None:
                metrics["epsilon"] = dp.epsilon()  # spent so far, at trainer.privacy.delta
            best.history.append({"epoch": epoch, **metrics})
            log(epoch, metrics)
            # Select on val loss, not accuracy: on a few hundred val images accuracy moves in steps of
            # one image and picks lucky early epochs; the loss ranks checkpoints more smoothly.
            if val_loss < best_val_loss:
                best_val_loss = val_loss
                best.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                best.best_epoch, best.best_val_accuracy = epoch, val_acc
            say(f"epoch {epoch:3d}/{s.epochs}  train_loss {metrics['train_loss']:.4f}  val_loss {val_loss:.4f}  "
                f"val_acc {val_acc:.4f}  lr {lr:.2e}" + (f"  epsilon {metrics['epsilon']:.3f}" if dp else "")
                + f"  {time.perf_counter() - t0:.2f}s", flush=True)
            stop = 0 < s.early_stopping_patience <= epoch - max(best.best_epoch, 0)
            if saver is not None and epoch < s.epochs and not stop:
                saver.save(_state(epoch, model, optimizer, scheduler, generator, best, best_val_loss, dp))
            if stop:
                say(f"train: early stop after epoch {epoch}: val loss has not improved for "
                    f"{s.early_stopping_patience} epochs", flush=True)
                break
    finally:
        if saver is not None:
            saver.close()  # the last state is on disk before the run goes on
        if dp is not None:
            dp.close()

    say(f"train: best epoch {best.best_epoch} (val_loss {best_val_loss:.4f}, val_accuracy "
        f"{best.best_val_accuracy:.4f})", flush=True)
    if dp is not None:
        # Every step taken counts, not only those up to the best epoch: choosing among all epochs saw them all.
        best.privacy = dp.record()
        say(f"train: differential privacy spent epsilon {best.privacy['epsilon']:.3f} at delta {s.privacy.delta:g} "
            f"over {best.privacy['steps']} steps (target epsilon {s.privacy.target_epsilon:g})", flush=True)
    return best


def _state(epoch: int, model, optimizer, scheduler, generator, best: FitResult, best_val_loss: float,
           dp=None) -> dict[str, Any]:
    return {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            **({"privacy": dp.state_dict()} if dp is not None else {}),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "generator": generator.get_state(),
            # When this epoch was the best, the best weights are the model's: don't write them twice.
            "best_state": None if best.best_epoch == epoch else best.best_state,
            "best_epoch": best.best_epoch, "best_val_accuracy": best.best_val_accuracy,
            "best_val_loss": best_val_loss, "history": best.history}
