"""The Bento's adaptive batcher, in-process: shared forward passes, each caller gets its own rows back."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from maas.serving.batching import Batcher


class Model:
    """Doubles its rows; records every forward pass; can be held so requests pile up behind it."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.passes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, rows: np.ndarray) -> tuple:
        self.gate.wait(5)
        self.passes.append(len(rows))
        if self.fail_on is not None and (rows == self.fail_on).any():
            raise RuntimeError("model fault")
        return rows * 2, None


def rows(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 3), value, np.float32)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows():
    model = Model()
    seen: list[tuple[int, int]] = []

    async def main():
        batcher = Batcher(model, max_batch_size=64, max_latency_ms=0, on_batch=lambda r, n: seen.append((r, n)))
        model.gate.clear()  # the first request holds the model; the others queue behind it
        first = asyncio.ensure_future(batcher.run(rows(0)))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.run(rows(i, n=1 + i % 3))) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        model.gate.set()
        return await first, await asyncio.gather(*rest)

    first, rest = run(main())
    assert np.array_equal(first[0], rows(0) * 2) and first[1] is None
    for i, (out, anomaly) in enumerate(rest, start=1):
        assert np.array_equal(out, rows(i, n=1 + i % 3) * 2) and anomaly is None
    assert model.passes == [1, sum(1 + i % 3 for i in range(1, 21))]  # the 20 waiting requests: one pass
    assert seen == [(1, 1), (20, model.passes[1])]


def test_a_batch_never_exceeds_max_batch_size_and_a_larger_request_runs_alone():
    model = Model()

    async def main():
        batcher = Batcher(model, max_batch_size=4, max_latency_ms=0)
        model.gate.clear()
        first = asyncio.ensure_future(batcher.run(rows(0)))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(batcher.run(rows(i, n))) for i, n in enumerate([3, 2, 9, 1, 1], start=1)]
        await asyncio.sleep(0.05)
        model.gate.set()
        return [await first, *await asyncio.gather(*waiting)]

    outs = run(main())
    assert [len(o[0]) for o in outs] == [1, 3, 2, 9, 1, 1]
    assert model.passes == [1, 3, 2, 9, 2]  # 3 | 2 (3+2 > 4) | 9 alone | 1+1


def test_max_latency_holds_a_batch_open_for_late_arrivals():
    model = Model()

    async def main():
        batcher = Batcher(model, max_batch_size=8, max_latency_ms=300)
        first = asyncio.ensure_future(batcher.run(rows(1)))
        await asyncio.sleep(0.05)  # well within the 300 ms the first request may wait
        second = asyncio.ensure_future(batcher.run(rows(2)))
        return await first, await second

    run(main())
    assert model.passes == [2]


def test_a_model_fault_fails_only_the_requests_of_that_pass():
    model = Model(fail_on=-1)

    async def main():
        batcher = Batcher(model, max_batch_size=2, max_latency_ms=0)
        model.gate.clear()
        first = asyncio.ensure_future(batcher.run(rows(0)))
        await asyncio.sleep(0.05)
        doomed = [asyncio.ensure_future(batcher.run(rows(v))) for v in (-1, 5)]  # one pass: 2 rows
        fine = asyncio.ensure_future(batcher.run(rows(7)))                      # the next pass
        await asyncio.sleep(0.05)
        model.gate.set()
        results = await asyncio.gather(first, *doomed, fine, return_exceptions=True)
        after = await batcher.run(rows(3))  # the batcher keeps serving
        return results, after

    results, after = run(main())
    assert np.array_equal(results[0][0], rows(0) * 2)
    assert all(isinstance(r, RuntimeError) for r in results[1:3])
    assert np.array_equal(results[3][0], rows(7) * 2)
    assert np.array_equal(after[0], rows(3) * 2)


def test_a_caller_that_went_away_costs_no_forward_pass():
    model = Model()

    async def main():
        batcher = Batcher(model, max_batch_size=8, max_latency_ms=0)
        model.gate.clear()
        first = asyncio.ensure_future(batcher.run(rows(0)))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.run(rows(1, n=5)))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client disconnected while its request waited
        stays = asyncio.ensure_future(batcher.run(rows(2)))
        await asyncio.sleep(0.05)
        model.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await first, await stays

    run(main())
    assert model.passes == [1, 1]
