"""Latency of a predictor as the Bento sees it: one call per request, wall time, percentiles.

Shared by the compress stage (which picks a variant by it) and bench/compression.py.
Measured on one thread, as a served worker runs (`resources: cpu: 1`); numbers on a
shared machine are noisy, so compare variants measured in the same run, never across runs.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread while measuring (ONNX Runtime and LiteRT sessions are made with one)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch:
            torch.set_num_threads(before)


def measure(predicts: dict[str, Callable[[np.ndarray], object]], x: np.ndarray, batch: int, rounds: int,
            warmup: int = 10) -> dict[str, dict[str, float]]:
    """p50 and p99 milliseconds of each `predict(rows)` over `rounds` calls of `batch` rows, cycling through x.

    The predictors take turns call by call, so a slow spell of the machine lands on all of them
    alike instead of on whichever was being timed then."""
    if rounds < 1 or batch < 1:
        raise ValueError("rounds and batch must be >= 1")
    pool = np.concatenate([x] * (-(-batch // len(x)) + 1))  # long enough to cut any batch from any start
    times: dict[str, list[float]] = {name: [] for name in predicts}
    for i in range(warmup + rounds):
        start = (i * batch) % len(x)
        rows = pool[start:start + batch]
        for name, predict in predicts.items():
            t0 = time.perf_counter()
            predict(rows)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, t in times.items():
        ms = np.asarray(t) * 1e3
        out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}
    return out
