"""An onnx_int8 Bento over real HTTP: packaged from the tiny run, served by `maas serve`, never importing torch."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import copy_outputs, serving_project
from maas.data.split_files import read_split

pytestmark = pytest.mark.slow

# sitecustomize on the server's PYTHONPATH: runs first in every process of the server (the CLI, BentoML's
# supervisor and its workers) and writes down the first import of each framework, and by whom.
RECORD_FRAMEWORKS = """
import builtins, os
_real, _seen, _out = builtins.__import__, set(), os.environ["MAAS_TEST_FRAMEWORKS"]
def _record(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.partition(".")[0]
    if level == 0 and top in ("torch", "tensorflow", "onnxruntime") and top not in _seen:
        _seen.add(top)
        with open(_out, "a") as f:
            f.write(f"{top} imported by {(globals or {}).get('__name__')} in process {os.getpid()}\\n")
    return _real(name, globals, locals, fromlist, level)
builtins.__import__ = _record
"""


@pytest.fixture(scope="module")
def onnx_served(tiny_run, tmp_path_factory):
    """The tiny run's model compressed with onnx_int8 and packaged, then `maas serve`d from a project
    whose BentoML store is empty (the Bento comes from its archive, as on a fresh machine)."""
    from omegaconf import OmegaConf

    from maas.registry import get

    work = tmp_path_factory.mktemp("serve-onnx")
    cfg = copy_outputs(tiny_run[0], work, "reports")  # compress and package write reports: the run's stay as they are
    OmegaConf.update(cfg, "paths.compressed", str(work / "compressed"))
    OmegaConf.update(cfg, "paths.bento", str(work / "bento"))
    cfg.compress.method = "onnx_int8"
    assert get("compress").run(cfg)["chosen"] == "onnx_int8"
    get("package").run(cfg)

    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(RECORD_FRAMEWORKS)
    path = os.pathsep.join(p for p in (str(work / "hook"), os.environ.get("PYTHONPATH")) if p)
    with serving_project(cfg, work, MAAS_TEST_FRAMEWORKS=str(work / "frameworks.txt"), PYTHONPATH=path) as url:
        yield {"url": url, "cfg": cfg, "log": work / "serve.log", "frameworks": work / "frameworks.txt"}


def test_the_onnx_bento_answers_as_the_stored_model_does_without_torch(onnx_served):
    from maas import model_files
    from maas.data.preprocessor import Preprocessor
    from maas.data.sources import read_raw, to_arrays

    cfg = onnx_served["cfg"]
    x, y = to_arrays(read_raw(cfg), cfg.data)
    raw = x[read_split(cfg.paths.processed, "test")["index"]]
    # One request of every test image, and the first 20 again one per request: each answer must be the
    # in-process one, whatever it was batched with.
    r = httpx.post(f"{onnx_served['url']}/predict", json={"images": raw.reshape(-1, 8, 8).astype(int).tolist()},
                   timeout=60)
    assert r.status_code == 200, r.text
    singles = [httpx.post(f"{onnx_served['url']}/predict", json={"images": [image.tolist()]}, timeout=30).json()
               for image in raw[:20].reshape(-1, 8, 8).astype(int)]
    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    loaded = model_files.load(cfg.paths.compressed)
    assert loaded.spec["compression"]["method"] == "onnx_int8"
    expected = loaded.predictor.predict(pre.transform(raw)).proba
    body = r.json()
    assert np.array_equal(body["classes"], expected.argmax(1))
    assert np.array_equal(body["probabilities"], expected.astype(float).round(6))  # the service rounds to 6 places
    assert [s["classes"][0] for s in singles] == body["classes"][:20]
    assert [s["probabilities"][0] for s in singles] == body["probabilities"][:20]

    card = httpx.get(f"{onnx_served['url']}/metadata", timeout=10).json()
    assert card["compression"]["chosen"] == "onnx_int8"
    assert "run by onnxruntime, compression=onnx_int8" in onnx_served["log"].read_text()
    # The worker imported onnxruntime (so the record works there), and no process of the server imported torch.
    imported = onnx_served["frameworks"].read_text()
    assert {line.split()[0] for line in imported.splitlines()} == {"onnxruntime"}, imported
