"""The served variant against the fp32 model it came from, side by side in one run.

    .venv/bin/python bench/compression.py [--rounds 300] [--threads 1]

Reads models/trained (fp32, run by its training backend) and models/compressed
(the variant the compress stage chose and the Bento serves), as `make run` left
them, loads both from disk as the Bento does, and times predict call by call in
turns (maas.latency), so both see the same machine load: p50/p99 at batch 1
and 64. Absolute times on a shared 2-core machine are not stable; the ratios
are what to compare. Goals (issue 11): >= 3.5x smaller, >= 1.5x faster at
batch 1, <= 0.5 points of test accuracy lost. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maas import compression, latency, model_files
from maas.params_file import load_params
from maas.stages.preprocess import load_split

GOALS = {"size_ratio": 3.5, "speedup_batch1": 1.5, "accuracy_drop_points": 0.5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=300, help="timed calls per batch size and model")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    cfg = load_params(args.params)
    x, y = load_split(cfg, "test")
    dirs = {"fp32": Path(cfg.paths.trained), "served": Path(cfg.paths.compressed)}
    loaded = {k: model_files.load(d) for k, d in dirs.items()}
    method = model_files.compression_method(loaded["served"].spec)
    size = {k: compression.artifact_bytes(dirs[k], m.spec) for k, m in loaded.items()}
    acc = {k: float((m.predictor.predict(x).proba.argmax(1) == y).mean()) for k, m in loaded.items()}
    timings = {}
    with latency.one_thread():
        for batch in (1, 64):
            timings[batch] = latency.measure({k: m.predictor.predict for k, m in loaded.items()}, x, batch, args.rounds)
    print(f"{len(x)} test images; {args.rounds} timed calls per batch size, taking turns; one thread")
    print(f"  {'model':>24} {'runtime':>11} {'bytes':>9} {'test acc':>8}  p50/p99 ms batch 1   p50/p99 ms batch 64")
    for k, m in loaded.items():
        name = f"fp32 ({m.spec['backend']})" if k == "fp32" else f"served: {method}"
        print(f"  {name:>24} {model_files.runtime(m.spec):>11} {size[k]:>9,} {acc[k]:>8.4f}  "
              f"{timings[1][k]['p50_ms']:7.3f} / {timings[1][k]['p99_ms']:7.3f}   "
              f"{timings[64][k]['p50_ms']:7.3f} / {timings[64][k]['p99_ms']:7.3f}")
    figures = {
        "size_ratio": round(size["fp32"] / size["served"], 3),
        "speedup_batch1": round(timings[1]["fp32"]["p50_ms"] / timings[1]["served"]["p50_ms"], 3),
        "speedup_batch64": round(timings[64]["fp32"]["p50_ms"] / timings[64]["served"]["p50_ms"], 3),
        "accuracy_drop_points": round(100 * (acc["fp32"] - acc["served"]), 3),
    }
    met = {"size_ratio": figures["size_ratio"] >= GOALS["size_ratio"],
           "speedup_batch1": figures["speedup_batch1"] >= GOALS["speedup_batch1"],
           "accuracy_drop_points": figures["accuracy_drop_points"] <= GOALS["accuracy_drop_points"]}
    print("  " + ", ".join(f"{k} {v} ({'met' if met.get(k, True) else 'NOT met'}"
                           f"{', goal ' + str(GOALS[k]) if k in GOALS else ''})" for k, v in figures.items()))
    print(json.dumps({**figures, "method": method, "goals_met": met, "bytes": size, "test_accuracy": acc,
                      "p50_ms": {b: {k: v["p50_ms"] for k, v in t.items()} for b, t in timings.items()},
                      "rounds": args.rounds}))


if __name__ == "__main__":
    main()
