"""Training speed: maas's torch trainer against a bare hand-written loop, and the TensorFlow backend.

    .venv/bin/python bench/training.py [--rounds 12] [--epochs 4] [--threads 1]

Same work for every contender: the digits train split (data/processed/train/,
as `make run` leaves it) and the val split, the default CNN from the composed
config with trainer.augment_shift=0 and trainer.device=cpu, the configured batch
size (64) and AdamW (lr, weight decay, betas from conf/trainer/optimizer/adamw.yaml),
`--epochs` epochs per round, each epoch followed by one validation pass over the
val split in batches of 512 (cross-entropy sum and accuracy, eval mode, no_grad).

Contenders, run in one process in alternating rounds (the order rotates each
round, so all see the same machine load):

  maas        maas.backends.torch.api.train on the composed config, trainer.resume=false:
              exactly what `maas stage train` runs minus DVCLive and writing the model dir
              (Settings built there, Objective wrapper, default cosine schedule with warmup
              stepped per batch, loss.item() per step, GradScaler/autocast no-ops, best-state
              copy when val loss improves, progress line per epoch)
  maas+resume the same with trainer.resume=true, the default: also saves the whole training
              state (safetensors + JSON, atomically) after every epoch but the last
  bare        the plainest correct torch loop: same model class and init seed, torch.optim.AdamW
              with the same arguments, per epoch randperm -> index batch -> forward ->
              cross_entropy -> zero_grad -> backward -> step, then the same validation pass;
              no scheduler, no per-step .item(), no best-state copy, no printing
  tensorflow  maas.backends.tensorflow.api.train on the same config with trainer.backend=tensorflow
              (Keras CNN twin, tf.function train step driven from Python, same schedule)

samples/s counts only the steady epochs: from the end of epoch 1's validation to the
end of the last epoch's (timestamped in the `log` callback every backend calls after
validation), so (epochs - 1) x train samples over that time. Epoch 1 carries the
one-off costs (model build, optimizer creation, TensorFlow's graph tracing); they are
reported separately as "first-epoch overhead" (first epoch time minus a steady epoch),
as is the whole call's samples/s. Imports are timed once and reported, never in ratios.
The same steady epochs are also counted per second of process CPU time (time.process_time,
all threads): wall time is what users wait for, CPU time is steadier when other jobs
share the cores, so the two together tell a real gap from a noisy one.

Threads: torch.set_num_threads(T) and set_num_interop_threads(T); TensorFlow intra- and
inter-op parallelism both T (default 1: the machine is shared). Ratios are of medians
over rounds; absolute samples/s on a shared 2-core machine are not stable. The last
line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


class Timed:
    """What one contender's run left: epoch-end timestamps and the whole call's start and end."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []
        self.start = self.end = 0.0

    def log(self, epoch: int, metrics: dict) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())

    def steady_samples_per_s(self, n: int) -> float:
        return (len(self.stamps) - 1) * n / (self.stamps[-1] - self.stamps[0])

    def steady_samples_per_cpu_s(self, n: int) -> float:
        return (len(self.cpu_stamps) - 1) * n / (self.cpu_stamps[-1] - self.cpu_stamps[0])

    def whole_samples_per_s(self, n: int) -> float:
        return len(self.stamps) * n / (self.end - self.start)

    def first_epoch_overhead(self) -> float:
        steady_epoch = (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)
        return (self.stamps[0] - self.start) - steady_epoch


def run_quietly(fn: Callable[[Timed], None]) -> Timed:
    timed = Timed()
    with contextlib.redirect_stdout(io.StringIO()):
        timed.start = time.perf_counter()
        fn(timed)
        timed.end = time.perf_counter()
    return timed


def bare_loop(cfg, train, val, timed: Timed) -> None:
    """The plainest correct hand-written torch loop doing the same work as maas's fit."""
    import torch
    from torch import nn

    from maas.models import build_model

    t = cfg.trainer
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, backend="torch")
    opt = cfg.trainer.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay,
                                  betas=tuple(opt.betas))
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    xv, yv = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, t.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), t.batch_size):
            idx = order[i:i + t.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(xv), 512):
                logits = model(xv[i:i + 512])
                total += nn.functional.cross_entropy(logits, yv[i:i + 512], reduction="sum").item()
                correct += (logits.argmax(1) == yv[i:i + 512]).sum().item()
        timed.log(epoch, {"val_loss": total / len(xv), "val_accuracy": correct / len(xv)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per contender per round (>= 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-tensorflow", action="store_true", help="torch contenders only")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2: the first epoch is not a steady one")
    os.chdir(ROOT)  # conf/ and data/processed/ are found from the project root

    imports: dict[str, float] = {}
    t0 = time.perf_counter()
    import torch

    imports["torch"] = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    t0 = time.perf_counter()
    from maas.backends.torch import api as torch_api
    from maas.config import compose
    from maas.stages.preprocess import load_split

    imports["maas (torch side)"] = time.perf_counter() - t0
    tf_api = None
    if not args.no_tensorflow:
        t0 = time.perf_counter()
        from maas.backends.tensorflow import keras as _keras

        _keras()
        import tensorflow as tf

        # Before TensorFlow's runtime starts (the first op), or the setting is refused.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        from maas.backends.tensorflow import api as tf_api

        imports["tensorflow + keras + maas (tf side)"] = time.perf_counter() - t0

    common = ["trainer.augment_shift=0", "trainer.device=cpu", f"trainer.epochs={args.epochs}"]
    t0 = time.perf_counter()
    cfg = compose([*common, "trainer.resume=false"])
    compose_s = time.perf_counter() - t0
    # The resume contender saves on the disk users' runs save on (paths.checkpoints), in a folder of
    # its own, so it never picks up a user's killed run; removed at the end.
    Path(cfg.paths.checkpoints).mkdir(parents=True, exist_ok=True)
    checkpoints = tempfile.mkdtemp(dir=cfg.paths.checkpoints, prefix="bench-")
    cfg_resume = compose([*common, "trainer.resume=true", f"paths.checkpoints={checkpoints}"])
    cfg_tf = compose([*common, "trainer.resume=false", "trainer.backend=tensorflow"])
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    n = len(train[0])

    contenders: dict[str, Callable[[Timed], None]] = {
        "maas": lambda timed: torch_api.train(cfg, train, val, log=timed.log),
        "maas+resume": lambda timed: torch_api.train(cfg_resume, train, val, log=timed.log),
        "bare": lambda timed: bare_loop(cfg, train, val, timed),
    }
    if tf_api is not None:
        contenders["tensorflow"] = lambda timed: tf_api.train(cfg_tf, train, val, log=timed.log)
    names = list(contenders)
    # No separate warm-up round: lazy initialisation lands in epoch 1, which the steady figure leaves out.
    steady: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    whole: dict[str, list[float]] = {k: [] for k in names}
    first: dict[str, list[float]] = {k: [] for k in names}
    try:
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order[::-1] if r % 2 else order:  # rotated, every other round reversed: no fixed neighbours
                timed = run_quietly(contenders[name])
                steady[name].append(timed.steady_samples_per_s(n))
                cpu[name].append(timed.steady_samples_per_cpu_s(n))
                whole[name].append(timed.whole_samples_per_s(n))
                first[name].append(timed.first_epoch_overhead())
            print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{k} {steady[k][-1]:,.0f}" for k in names),
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in steady.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med_whole = {k: statistics.median(v) for k, v in whole.items()}
    med_first = {k: statistics.median(v) for k, v in first.items()}

    def paired(a: str, b: str) -> float:  # median of per-round ratios: robust to slow drifts in load
        return statistics.median(x / y for x, y in zip(steady[a], steady[b]))

    print(f"{n:,} train + {len(val[0]):,} val samples, batch {cfg.trainer.batch_size}, "
          f"{cfg.trainer.optimizer.name} lr {cfg.trainer.optimizer.lr} wd {cfg.trainer.optimizer.weight_decay}, "
          f"{args.epochs} epochs per round, {args.rounds} rounds, {args.threads} thread(s) "
          f"(torch intra/inter-op, tensorflow intra/inter-op), torch {torch.__version__}"
          + (f", tensorflow {tf.__version__}" if tf_api is not None else ""))
    print(f"{'contender':>12} | {'steady samples/s':>16} | {'vs bare':>7} | {'samples/CPU-s':>13} | "
          f"{'vs bare':>7} | {'whole call samples/s':>20} | {'first-epoch overhead':>20}")
    for k in names:
        print(f"{k:>12} | {med[k]:16,.0f} | {med[k] / med['bare']:7.3f} | {med_cpu[k]:13,.0f} | "
              f"{med_cpu[k] / med_cpu['bare']:7.3f} | {med_whole[k]:20,.0f} | {med_first[k] * 1e3:17,.0f} ms")
    print("one-off (not in the ratios): " + ", ".join(f"import {k} {v:.2f} s" for k, v in imports.items())
          + f", compose {compose_s * 1e3:.0f} ms")
    figures = {
        "maas_vs_bare": round(med["maas"] / med["bare"], 4),
        "maas_resume_vs_bare": round(med["maas+resume"] / med["bare"], 4),
        "resume_vs_no_resume": round(med["maas+resume"] / med["maas"], 4),
        "tensorflow_vs_torch": round(med["tensorflow"] / med["maas"], 4) if tf_api is not None else None,
        "paired_median_ratios": {"maas_vs_bare": round(paired("maas", "bare"), 4),
                                 "maas_resume_vs_bare": round(paired("maas+resume", "bare"), 4),
                                 **({"tensorflow_vs_torch": round(paired("tensorflow", "maas"), 4)}
                                    if tf_api is not None else {})},
        "steady_samples_per_s": {k: round(v, 1) for k, v in med.items()},
        # Process CPU time instead of wall time: steadier when other jobs share the cores.
        "steady_samples_per_cpu_s": {k: round(v, 1) for k, v in med_cpu.items()},
        "cpu_time_ratios": {"maas_vs_bare": round(med_cpu["maas"] / med_cpu["bare"], 4),
                            "maas_resume_vs_bare": round(med_cpu["maas+resume"] / med_cpu["bare"], 4),
                            **({"tensorflow_vs_torch": round(med_cpu["tensorflow"] / med_cpu["maas"], 4)}
                               if tf_api is not None else {})},
        "whole_call_samples_per_s": {k: round(v, 1) for k, v in med_whole.items()},
        "first_epoch_overhead_s": {k: round(v, 4) for k, v in med_first.items()},
        "import_s": {k: round(v, 3) for k, v in imports.items()},
        "threads": args.threads, "epochs": args.epochs, "rounds": args.rounds,
        "batch_size": cfg.trainer.batch_size, "train_samples": n,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
