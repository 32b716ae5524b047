"""The pipeline with `trainer.backend=tensorflow`, unchanged stages, and its Bento over real HTTP:
compressed to full int8 TFLite, served by LiteRT without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import BIN, copy_outputs, free_port, start, stop, wait_http

pytestmark = pytest.mark.slow

README_IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
                [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]


@pytest.fixture(scope="module")
def tf_run(tiny_run, tmp_path_factory):
    """train → evaluate → compress → package on TensorFlow, from the tiny run's validated data."""
    from maas.config import compose
    from maas.registry import get

    work = tmp_path_factory.mktemp("tf-run")
    cfg = copy_outputs(tiny_run[0], work, "validated", "processed", "trained", "compressed", "reports", "bento")
    cfg.trainer.backend, cfg.trainer.epochs = "tensorflow", 3
    cfg.model = compose(["model=autoencoder"]).model  # the family whose response carries anomaly scores
    cfg.compress.method = "tflite_int8"
    summaries = {name: get(name).run(cfg) for name in ("train", "evaluate", "compress", "package")}
    return cfg, summaries


def test_the_stages_run_unchanged_on_tensorflow(tf_run):
    from maas import io, model_files

    cfg, summaries = tf_run
    spec = model_files.read_spec(cfg.paths.compressed)
    assert spec["backend"] == "tensorflow" and spec["model"]["arch"] == "autoencoder"
    assert spec["runtime"] == "litert" and spec["compression"]["method"] == "tflite_int8"
    metrics = io.read_json(Path(cfg.paths.reports) / "metrics.json")["test"]
    assert metrics["accuracy"] > 0.8 and metrics["anomaly_auroc"] > 0.9, metrics
    import bentoml

    bento = bentoml.bentos.get(summaries["package"]["bento_tag"])
    pins = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text().split()
    # LiteRT runs it: the image needs neither TensorFlow nor torch.
    assert any(p.startswith("ai-edge-litert==") for p in pins)
    assert not any(p.startswith(("tensorflow-cpu==", "keras==", "torch==")) for p in pins), pins


def test_its_bento_answers_like_the_torch_one(tf_run, tmp_path):
    from maas import model_files
    from maas.data.preprocessor import Preprocessor

    cfg, summaries = tf_run
    port = free_port()
    proc = start([str(BIN / "bentoml"), "serve", summaries["package"]["bento_tag"], "--port", str(port)],
                 tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", proc, timeout=180)
        r = httpx.post(f"{url}/predict", json={"images": [README_IMAGE, README_IMAGE]}, timeout=60)
        bad = httpx.post(f"{url}/predict", json={"images": [[[0] * 7] * 8]}, timeout=60)
    finally:
        stop(proc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body) == ["anomaly_scores", "classes", "probabilities"]
    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    local = model_files.load(cfg.paths.compressed).predictor.predict(pre.transform(np.array([README_IMAGE] * 2)))
    assert body["classes"] == local.proba.argmax(1).tolist()
    assert body["probabilities"] == local.proba.astype(float).round(6).tolist()  # what compress measured, exactly
    assert body["anomaly_scores"] == local.anomaly.astype(float).round(6).tolist()
    assert bad.status_code == 400 and list(bad.json()) == ["error"] and "8x8" in bad.json()["error"]
