"""`bentoml serve` over real HTTP: the Bento the package stage built, on a machine whose store lacks it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import BIN, free_port, start, stop, wait_http
from maas import io
from maas.config import write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    """`maas serve` with an empty BentoML store: it imports the exported archive, then serves it."""
    cfg, summaries = tiny_run
    work = tmp_path_factory.mktemp("serve")
    params = work / "params.yaml"
    write_params(cfg, params)
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml")}
    port = free_port()
    proc = start([str(BIN / "maas"), "serve", "--params", str(params), "--port", str(port)], work / "serve.log",
                 env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
        yield {"url": f"http://127.0.0.1:{port}", "home": work / "bentoml", "cfg": cfg,
               "bento_tag": summaries["package"]["bento_tag"], "log": work / "serve.log"}
    finally:
        stop(proc)


def predict(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=30)


def test_predicts_raw_images_like_the_pipeline_does(served):
    from maas.backends.torch.checkpoint import load_model
    from maas.backends.torch.fit import predict_proba
    from maas.data.preprocessor import Preprocessor
    from maas.data.sources import read_raw, to_arrays

    cfg = served["cfg"]
    x, y = to_arrays(read_raw(cfg), cfg.data)
    test_idx = io.read_npz(Path(cfg.paths.processed) / "test.npz")["index"]
    raw = x[test_idx]
    r = predict(served["url"], {"images": raw.reshape(-1, 8, 8).astype(int).tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    classes = np.array(body["classes"])
    assert classes.shape == (len(test_idx),)
    assert np.allclose(np.array(body["probabilities"]).sum(1), 1, atol=1e-4)
    model, _ = load_model(cfg.paths.compressed)
    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    expected = predict_proba(model, pre.transform(raw)).argmax(1)
    assert np.array_equal(classes, expected)  # the Bento applies the same preprocessing
    assert (classes == y[test_idx]).mean() > 0.85


@pytest.mark.parametrize("body, named", [
    ({"images": [[[0] * 7] * 8]}, "8x8, got 8x7"),
    ({"images": [[[0] * 8] * 8, [[0] * 8] * 7]}, "images[1]"),
    ({"images": [[[99] * 8] * 8]}, "outside [0, 16]"),
    ({"images": []}, "non-empty"),
    ({"images": "abc"}, "images"),
    ({"pictures": [[[0] * 8] * 8]}, "images"),
    ({"images": [[["x"] * 8] * 8]}, "not a numeric"),
])
def test_bad_requests_get_a_4xx_that_names_the_problem(served, body, named):
    r = predict(served["url"], body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert named in r.text


def test_too_large_a_batch_is_refused(served):
    limit = served["cfg"].serve.max_batch_size
    r = predict(served["url"], {"images": [[[0] * 8] * 8] * (limit + 1)})
    assert r.status_code == 400 and f"at most {limit}" in r.text


def test_a_service_whose_model_is_broken_exits(served, tmp_path):
    """A corrupt weights file must stop the server, not leave it up answering nothing."""
    home = tmp_path / "bentoml"
    shutil.copytree(served["home"], home, symlinks=True)
    weights = next((home / "models").rglob("weights*.safetensors"))
    weights.write_bytes(b"not safetensors")
    proc = start([str(BIN / "bentoml"), "serve", served["bento_tag"], "--port", str(free_port())],
                 tmp_path / "broken.log", env={**os.environ, "BENTOML_HOME": str(home)})
    try:
        proc.wait(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode != 0
    log = (tmp_path / "broken.log").read_text()
    assert "safetensors" in log.lower() or "weights" in log.lower(), log[-2000:]
