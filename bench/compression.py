"""Inference speed of the compressed model against fp32, measured side by side.

    .venv/bin/python bench/compression.py [--rounds 30] [--batch 1]

Loads models/trained (fp32) and models/compressed (what the Bento serves), as
`make run` left them, and times predict on the test split in alternating
rounds, so both see the same machine load. Prints the median time of each and
their ratio; absolute times on a shared 2-core machine are not stable, the
ratio is what to compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from maas import model_files
from maas.config import load_params
from maas.stages.preprocess import load_split


def time_once(predictor, x, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        predictor.predict(x[i:i + batch])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=512, help="images per forward pass (1 = request-at-a-time)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = load_params()
    x, y = load_split(cfg, "test")
    fp32 = model_files.load(cfg.paths.trained).predictor
    loaded = model_files.load(cfg.paths.compressed)
    small, method = loaded.predictor, model_files.compression_method(loaded.spec)
    for m in (fp32, small):  # warm up
        time_once(m, x, args.batch)
    times = {"fp32": [], method: []}
    for _ in range(args.rounds):
        times["fp32"].append(time_once(fp32, x, args.batch))
        times[method].append(time_once(small, x, args.batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    sizes = {"fp32": sum(f.stat().st_size for f in Path(cfg.paths.trained).glob("*.safetensors")),
             method: sum(f.stat().st_size for f in Path(cfg.paths.compressed).glob("*.safetensors"))}
    acc = {k: float((m.predict(x).proba.argmax(1) == y).mean()) for k, m in (("fp32", fp32), (method, small))}
    print(f"{len(x)} test images, batch {args.batch}, {args.threads} thread(s), median of {args.rounds} rounds")
    for k in times:
        print(f"  {k:>13}: {med[k] * 1e3:8.2f} ms  {sizes[k]:>9,} bytes  test accuracy {acc[k]:.4f}")
    print(f"  time ratio {method}/fp32: {med[method] / med['fp32']:.2f}   "
          f"size ratio: {sizes[method] / sizes['fp32']:.2f}")
    print(json.dumps({"method": method, "time_ratio": round(med[method] / med["fp32"], 4),
                      "size_ratio": round(sizes[method] / sizes["fp32"], 4),
                      "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()}, "bytes": sizes,
                      "test_accuracy": acc, "batch": args.batch, "threads": args.threads, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
