"""What monitoring adds to a request: the event loop's share, and how fast the recorder's thread keeps up.

    .venv/bin/python bench/recorder.py [--requests 20000]

(a) A minimal ASGI app answering 200, called `--requests` times in one event loop, alone and behind
LogRequests (request id, a RequestInfo, the queue put) with the service's `answered` hook, with
the prediction log off and at sample 1. Microseconds per request on the loop: what a request pays.
(b) The recorder's thread given those requests' items: request lines to /dev/null, records of one
8x8 image each to a temp folder, the drift window over the digits profile; items per second it
drains, against the requests per second one server answers (bench/serving.py: hundreds).
The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _profile() -> dict:
    from sklearn.datasets import load_digits

    from maas.data.profile import build_profile

    import pandas as pd

    x = load_digits().data
    frame = pd.DataFrame(x, columns=[f"pixel_{i}" for i in range(64)]).assign(label=load_digits().target)
    return build_profile(frame, {f"pixel_{i}": "numeric" for i in range(64)}, label_column="label")


async def _loop(n: int, recorder, wrap: bool) -> float:
    from maas.serving.request_log import REQUEST, LogRequests

    row, proba = np.zeros((1, 64), np.float32), np.full((1, 10), 0.1)

    async def app(scope, receive, send):  # the service's hook, as _answer calls it
        if recorder is not None:
            recorder.answered(scope["state"][REQUEST], row, [0], proba)
        await _app(scope, receive, send)

    handler = LogRequests(app, "/predict") if wrap else app

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    start = time.perf_counter()
    for _ in range(n):
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"x-request-id", b"bench-1")]}
        await handler(scope, receive, send)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    from maas.serving import metrics
    from maas.serving.input_drift import DriftWindow
    from maas.serving.prediction_log import LogSettings
    from maas.serving.recorder import Recorder, image_inputs

    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20000)
    args = p.parse_args()
    profile = _profile()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp, open("/dev/null", "w") as devnull:
        metrics.start_monitoring()
        bare = asyncio.run(_loop(args.requests, None, wrap=False))
        for name, settings in (("log_off", LogSettings()), ("log_sample_1", LogSettings(dir=tmp, sample=1.0))):
            window = DriftWindow(profile, 1000, None, metrics.publish_drift)
            recorder = Recorder(model_tag="bench:1", log=settings, field="images",
                                to_inputs=image_inputs((1, 8, 8), True), drift=window, out=devnull)
            service = SimpleNamespace(recorder=recorder)
            with mock.patch("maas.serving.request_log.get_current_service", new=lambda: service):
                per_request = asyncio.run(_loop(args.requests, recorder, wrap=True))
            start = time.perf_counter()
            recorder.close(timeout=600)
            drained = time.perf_counter() - start
            figures[name] = {"loop_us_per_request": round(per_request - bare, 2),
                             "thread_requests_per_s": round(args.requests / max(drained, 1e-9))}
            print(f"{name}: +{per_request - bare:.1f} us per request on the event loop (bare app {bare:.1f} us); "
                  f"the thread drained the rest of {args.requests} requests' items at "
                  f"{figures[name]['thread_requests_per_s']:,} requests/s after the loop ended", flush=True)
        figures["log_bytes_per_request"] = round(sum(f.stat().st_size for f in Path(tmp).iterdir()) / args.requests)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
