"""Test accuracy against the privacy budget: DP-SGD (Opacus) on digits at several epsilons, and without.

    .venv/bin/python bench/privacy.py [--epsilons 1,3,8] [--seeds 42,43,44] [--threads 1] [--overrides KEY=VALUE ...]

Every row trains the default digits CNN of the composed config (conf/model/cnn.yaml:
channels 32, hidden 128, dropout 0.25) with the default trainer (40 epochs, batch 64,
AdamW lr 0.003 with cosine warmup, augment_shift 1, best epoch on val loss), on the
same split (data=digits, seed 42: 1,257 train, 270 val, 270 test rows), trainer.device=cpu,
trainer.resume=false; only the privacy settings change:

  epsilon = e    trainer.privacy.enabled=true, target_epsilon=e (delta 1e-5, max_grad_norm 1.0,
                 prv accountant): model.norm follows to group (GroupNorm; Opacus refuses BatchNorm)
  inf, group     privacy off, model.norm=group: the same model as the private rows, no noise,
                 no clipping, shuffled batches (the fair "epsilon = infinity" row)
  inf, batch     privacy off, BatchNorm (model.norm's default): without --overrides, what `make run` trains

Each row runs once per seed in `--seeds` (trainer.seed drives init, batches and noise;
the split stays the one of seed 42), and reports the mean and the range of test accuracy
over the seeds, the epsilon spent (the accountant's, at delta, after the last epoch),
the noise multiplier Opacus chose and the training time. Test accuracy is of the
best-val-loss epoch's weights, as the pipeline would store them, predicted by
maas's torch predictor.

`--overrides` applies the same Hydra overrides to every row (a recipe for DP-SGD, say:
larger batches, a smaller model), so the rows stay comparable with each other.

The split is made once in a temp folder (validate + preprocess stages on the digits
export), so this needs no `make run`. The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DELTA = 1e-5


def prepare(work: Path) -> list[str]:
    """validate + preprocess the digits export into `work`; the overrides that point there."""
    from maas.config import compose
    from maas.data.sources import export_digits
    from maas.registry import get

    (work / "raw").mkdir(parents=True)
    export_digits(work / "raw" / "digits.csv")
    overrides = ["trainer.device=cpu", "trainer.resume=false", f"paths.raw={work / 'raw'}",
                 *(f"paths.{k}={work / k}" for k in ("validated", "processed", "trained", "compressed", "reports",
                                                     "bento", "checkpoints"))]
    cfg = compose(overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        for stage in ("validate", "preprocess"):
            get(stage).run(cfg)
    return overrides


def train_once(overrides: list[str], extra: list[str], seed: int) -> dict:
    from maas.backends.torch import api
    from maas.config import compose
    from maas.stages.preprocess import load_split

    cfg = compose([*overrides, *extra])
    # The split is the one of seed 42 (already on disk); trainer seed only: init, batch order, noise.
    cfg.seed = seed
    train, val, test = (load_split(cfg, s) for s in ("train", "val", "test"))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = api.train(cfg, train, val, log=lambda epoch, metrics: None)
    seconds = time.perf_counter() - t0
    accuracy = float((api.predictor(result.model).predict(test[0]).proba.argmax(1) == test[1]).mean())
    privacy = result.record.get("privacy") or {}
    return {"test_accuracy": accuracy, "best_epoch": result.best_epoch, "seconds": seconds,
            "norm": cfg.model.norm, "epsilon": privacy.get("epsilon"),
            "noise_multiplier": privacy.get("noise_multiplier"), "steps": privacy.get("steps"),
            "val_accuracy": result.best_val_accuracy, "test_rows": int(len(test[1])),
            "train_rows": int(len(train[1]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsilons", default="1,3,8", help="target epsilons of the private rows")
    ap.add_argument("--seeds", default="42,43,44", help="trainer seeds; each row runs once per seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--epochs", type=int, default=None, help="trainer.epochs (default: the config's, 40)")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every row, e.g. trainer.batch_size=512")
    args = ap.parse_args()
    epsilons = [float(e) for e in args.epsilons.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    sys.path.insert(0, str(ROOT / "src"))
    import os

    os.chdir(ROOT)
    import torch

    torch.set_num_threads(args.threads)
    rows = [(f"{e:g}", ["trainer.privacy.enabled=true", f"trainer.privacy.target_epsilon={e}",
                        f"trainer.privacy.delta={DELTA}"]) for e in epsilons]
    rows += [("inf, group", ["model.norm=group"]), ("inf, batch", [])]
    common = [*args.overrides, *([f"trainer.epochs={args.epochs}"] if args.epochs else [])]
    rows = [(name, [*common, *extra]) for name, extra in rows]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="maas-bench-privacy-") as tmp:
        overrides = prepare(Path(tmp))
        for seed in seeds:  # seed-major: every row sees the machine's load of the moment
            for name, extra in rows:
                r = train_once(overrides, extra, seed)
                results.setdefault(name, []).append(r)
                print(f"epsilon {name:>10}, seed {seed}: test accuracy {r['test_accuracy']:.4f}, "
                      + (f"epsilon spent {r['epsilon']:.3f}, noise multiplier {r['noise_multiplier']:.3f}, "
                         if r["epsilon"] is not None else "")
                      + f"best epoch {r['best_epoch']}, {r['seconds']:.0f}s", flush=True)

    first = next(iter(results.values()))[0]
    print(f"\ndigits, {first['train_rows']} train / {first['test_rows']} test rows, the default CNN and trainer"
          f"{' with ' + ' '.join(common) if common else ''}, delta {DELTA:g}, seeds {args.seeds}\n")
    print("| epsilon (target) | norm | epsilon spent | noise multiplier | test accuracy, mean | min .. max | "
          "train time, mean |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name, runs in results.items():
        accs = [r["test_accuracy"] for r in runs]
        spent = [r["epsilon"] for r in runs if r["epsilon"] is not None]
        noise = runs[0]["noise_multiplier"]
        summary[name] = {"test_accuracy_mean": round(statistics.mean(accs), 4), "test_accuracy_min": round(min(accs), 4),
                         "test_accuracy_max": round(max(accs), 4),
                         "epsilon_spent_max": round(max(spent), 4) if spent else None,
                         "noise_multiplier": round(noise, 4) if noise is not None else None,
                         "seconds_mean": round(statistics.mean(r["seconds"] for r in runs), 1)}
        s = summary[name]
        print(f"| {name.split(',')[0]} | {runs[0]['norm']} | {s['epsilon_spent_max'] if spent else '-'} | "
              f"{s['noise_multiplier'] if noise is not None else '-'} | {s['test_accuracy_mean']:.4f} | "
              f"{s['test_accuracy_min']:.4f} .. {s['test_accuracy_max']:.4f} | {s['seconds_mean']:.0f}s |")
    print(json.dumps({"delta": DELTA, "seeds": seeds, "overrides": common, "rows": summary}))


if __name__ == "__main__":
    main()
