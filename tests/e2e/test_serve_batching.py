"""Adaptive batching over real HTTP: concurrent requests share forward passes, and a bad request
never fails or changes the answers of the good ones it arrived with."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from maas.data.split_files import read_split

pytestmark = pytest.mark.slow


def expected(cfg, raw: np.ndarray) -> np.ndarray:
    from maas import model_files
    from maas.data.preprocessor import Preprocessor

    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    return model_files.load(cfg.paths.compressed).predictor.predict(pre.transform(raw)).proba


def batch_passes(url: str, headers: dict) -> tuple[float, float]:
    """(forward passes, requests they answered) so far, from the service's own histogram."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    count = float(re.search(r"^maas_batch_requests_count(?:\{[^}]*\})? (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^maas_batch_requests_sum(?:\{[^}]*\})? (\S+)$", text, re.M).group(1))
    return count, total


def test_good_and_bad_requests_interleaved_under_concurrency(served):
    cfg = served["cfg"]
    headers = served.get("headers", {})
    from maas.data.sources import read_raw, to_arrays

    x, _ = to_arrays(read_raw(cfg), cfg.data)
    test_idx = read_split(cfg.paths.processed, "test")["index"]
    raw = x[test_idx][:96]
    want = expected(cfg, raw)
    images = raw.reshape(-1, 8, 8).astype(int).tolist()
    bad_bodies = [b'{"images": [[[0]]]}', b'{"images": "x"}', b"not json",
                  json.dumps({"images": [[[99] * 8] * 8]}).encode(),
                  json.dumps({"images": [images[0]], "return_probabilities": "yes"}).encode()]
    # Good requests of 1-3 images each, every other one followed by a bad request.
    good = []
    i = 0
    while i < len(images):
        n = 1 + len(good) % 3
        good.append((i, images[i:i + n]))
        i += n
    before = batch_passes(served["url"], headers)

    async def send():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served["url"], timeout=60, limits=limits, headers=headers) as client:
            tasks = []
            for k, (start, imgs) in enumerate(good):
                tasks.append(client.post("/predict", json={"images": imgs}))
                if k % 2 == 0:
                    tasks.append(client.post("/predict", content=bad_bodies[k // 2 % len(bad_bodies)],
                                             headers={"content-type": "application/json"}))
            return await asyncio.gather(*tasks)

    responses = iter(asyncio.run(send()))
    for k, (start, imgs) in enumerate(good):
        r = next(responses)
        assert r.status_code == 200, r.text
        probs = np.array(r.json()["probabilities"])
        # The answer equals the in-process one (rounded to the 6 decimals the API sends): what a
        # request gets can't depend on the requests it was batched with.
        assert np.array_equal(r.json()["classes"], want[start:start + len(imgs)].argmax(1))
        assert np.allclose(probs, want[start:start + len(imgs)], atol=1e-6, rtol=0)
        if k % 2 == 0:
            bad = next(responses)
            assert bad.status_code == 400 and set(bad.json()) == {"error"}, bad.text
    passes, answered = np.subtract(batch_passes(served["url"], headers), before)
    assert answered == len(good)  # bad requests never reached a forward pass
    assert passes < len(good), "no two concurrent requests shared a forward pass"
