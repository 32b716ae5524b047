"""The training loop, all on one page.

    maas stage train                       # as `dvc repro` runs it
    maas stage train trainer.epochs=5      # quick try, composes conf/
    maas stage train -m model.channels=16,32,64   # sweep

Keeps the weights of the epoch with the lowest validation loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from maas.backends.torch.device import autocast, grad_scaler


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def get_lr(step: int, *, peak: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    # 1) linear warmup from ~0 to peak, 2) cosine decay from peak to peak*min_ratio
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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


def training_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or the model's own joint loss (the autoencoder adds its reconstruction error)."""
    joint = getattr(model, "joint_loss", None)
    return joint(x, y) if joint is not None else nn.functional.cross_entropy(model(x).float(), y)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels each way, repeating the edge pixels.

    Clamping the index grid is replicate padding, done for the whole batch in one gather.
    """
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator))
    rows = (torch.arange(h)[None, :] + dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w)[None, :] + dx[:, None]).clamp(0, w - 1)
    batch = torch.arange(b)[:, None, None]
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
        make_optimizer: Callable, device: torch.device, precision: str, epochs: int, batch_size: int,
        warmup_epochs: int, min_lr_ratio: float, seed: int, augment_shift: int = 0,
        log: Callable[[int, dict], None] = lambda epoch, metrics: None) -> FitResult:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_val, y_val = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    model.to(device)
    optimizer = make_optimizer(model.parameters())
    peak_lr = optimizer.param_groups[0]["lr"]
    scaler = grad_scaler(device, precision)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total_steps = epochs * steps_per_epoch
    print(f"train: {len(x_train):,} samples, {steps_per_epoch} steps/epoch, {total_steps:,} steps, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, device={device}, precision={precision}",
          flush=True)

    best, best_val_loss = FitResult({}, -1, -1.0), math.inf
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb = random_shift(x_train[idx], augment_shift, generator).to(device)
            yb = y_train[idx].to(device)
            lr = get_lr(step, peak=peak_lr, warmup_steps=warmup_epochs * steps_per_epoch,
                        total_steps=total_steps, min_ratio=min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, precision):
                loss = training_loss(model, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            running += loss.item() * len(idx)
            step += 1
        val_loss, val_acc = estimate_loss(model, x_val, y_val, batch_size=512, device=device, precision=precision)
        metrics = {"train_loss": running / len(x_train), "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
        best.history.append({"epoch": epoch, **metrics})
        log(epoch, metrics)
        # Select on val loss, not accuracy: on a few hundred val images accuracy moves in steps of
        # one image and picks lucky early epochs; the loss ranks checkpoints more smoothly.
        if val_loss < best_val_loss:
            best_val_loss = val_loss
            best.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best.best_epoch, best.best_val_accuracy = epoch, val_acc
        print(f"epoch {epoch:3d}/{epochs}  train_loss {metrics['train_loss']:.4f}  val_loss {val_loss:.4f}  "
              f"val_acc {val_acc:.4f}  lr {lr:.2e}  {time.perf_counter() - t0:.2f}s", flush=True)
    print(f"train: best epoch {best.best_epoch} (val_loss {best_val_loss:.4f}, val_accuracy "
          f"{best.best_val_accuracy:.4f})", flush=True)
    return best


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, *, device: torch.device | str = "cpu",
                  batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
        out.append(torch.softmax(model(xb).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
