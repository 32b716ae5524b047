"""Adaptive batching inside one server worker: concurrent requests share one forward pass.

Each request's rows were checked before they get here (the middleware refuses a bad
request on its own), so nothing in a batch can fail its batch-mates. One thread runs
the model, one batch at a time; while it runs, arriving requests queue up and form
the next batch, so batches grow with the load and a lone request never waits for
company. `max_latency_ms` > 0 additionally holds a batch open for that long while
it is smaller than `max_batch_size` (worth it only when the model, not the HTTP
work, is the bottleneck). A request larger than `max_batch_size` runs alone.

The answers can't depend on the batch: the backends run every forward pass at one
fixed shape (maas.backends.base.BLOCK_ROWS), so a row's result is bit-for-bit the
same whatever it shares a batch with.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class _Pending:
    rows: np.ndarray
    done: asyncio.Future
    info: Any = None  # its forward_batch is set to the rows of the pass that answers it (the request log's)


class Batcher:
    """`await batcher.run(rows)` -> infer's result for those rows, computed in a shared batch.

    `infer(rows)` takes the concatenated rows and returns a tuple of arrays (or None entries) with
    one leading entry per row; each caller gets its slice of every array.
    """

    def __init__(self, infer: Callable[[np.ndarray], tuple], max_batch_size: int, max_latency_ms: float,
                 on_batch: Callable[[int, int], None] = lambda requests, rows: None) -> None:
        self.infer, self.max_batch_size, self.max_wait = infer, max_batch_size, max_latency_ms / 1000
        self.on_batch = on_batch  # (requests, rows) of every forward pass run
        self._queue: asyncio.Queue[_Pending] | None = None
        self._carry: _Pending | None = None  # taken from the queue but too big for the batch it met
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-infer")
        self._worker: asyncio.Task | None = None

    async def run(self, rows: np.ndarray, info: Any = None) -> tuple:
        if self._worker is None:  # created lazily: the event loop is the server's, not the importer's
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        item = _Pending(rows, asyncio.get_running_loop().create_future(), info)
        self._queue.put_nowait(item)
        return await item.done

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            batch = [p for p in batch if not p.done.done()]  # the client went away: skip its rows
            if not batch:
                continue
            try:
                out = await loop.run_in_executor(self._pool, self.infer, np.concatenate([p.rows for p in batch]))
            except Exception as e:  # a fault of the model, not of a request: every caller gets it
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(e)
                continue
            start, total = 0, sum(len(p.rows) for p in batch)
            for p in batch:
                end = start + len(p.rows)
                if p.info is not None:
                    p.info.forward_batch = total
                if not p.done.done():
                    p.done.set_result(tuple(None if a is None else a[start:end] for a in out))
                start = end
            self.on_batch(len(batch), start)

    async def _collect(self, loop) -> list[_Pending]:
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, size = [first], len(first.rows)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                wait = deadline - loop.time()
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), wait)
                except asyncio.TimeoutError:
                    break
            if size + len(item.rows) > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            size += len(item.rows)
        return batch
