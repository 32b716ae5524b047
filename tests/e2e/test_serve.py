"""`maas serve` over real HTTP: the Bento the package stage built, on a machine whose store lacks it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import BIN, ROOT, SERVE_AUTH, free_port, own_store, start, stop
from maas.data.split_files import read_split

pytestmark = pytest.mark.slow

README_IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
                [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]
PIXELS = "pixels must be integers in [0, 16] (the raw data's type and range)"


def predict(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=30, headers=SERVE_AUTH)


def test_predicts_raw_images_like_the_pipeline_does(served):
    from maas import model_files
    from maas.data.preprocessor import Preprocessor
    from maas.data.sources import read_raw, to_arrays

    cfg = served["cfg"]
    x, y = to_arrays(read_raw(cfg), cfg.data)
    test_idx = read_split(cfg.paths.processed, "test")["index"]
    raw = x[test_idx]
    r = predict(served["url"], {"images": raw.reshape(-1, 8, 8).astype(int).tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    classes = np.array(body["classes"])
    assert classes.shape == (len(test_idx),)
    assert np.allclose(np.array(body["probabilities"]).sum(1), 1, atol=1e-4)
    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    expected = model_files.load(cfg.paths.compressed).predictor.predict(pre.transform(raw)).proba.argmax(1)
    assert np.array_equal(classes, expected)  # the Bento applies the same preprocessing
    assert body["anomaly_scores"] == []  # a CNN does not reconstruct its input
    assert (classes == y[test_idx]).mean() > 0.85


def image_with(pixel, at=(2, 3)) -> list:
    rows = [row[:] for row in README_IMAGE]
    rows[at[0]][at[1]] = pixel
    return rows


# (body, or its raw text; content-type; what the error says): each must get 400 and {"error": <that>}
BAD = {
    "huge int": ({"images": [image_with(10**309)]}, None, f"images[0][2][3] is an integer of 1027 bits; {PIXELS}"),
    "numeric string": ({"images": [image_with("5")]}, None, f'images[0][2][3] is "5"; {PIXELS}'),
    "underscored string": ({"images": [image_with(" 1_0 ")]}, None, f'images[0][2][3] is " 1_0 "; {PIXELS}'),
    "boolean": ({"images": [image_with(True)]}, None, f"images[0][2][3] is true; {PIXELS}"),
    "fraction": ({"images": [image_with(3.5)]}, None, f"images[0][2][3] is 3.5; {PIXELS}"),
    "scaled to 0..1": ({"images": [(np.array(README_IMAGE) / 16).tolist()]}, None, f"images[0][0][0] is 0.0; {PIXELS}"),
    "out of range": ({"images": [README_IMAGE, image_with(99)]}, None, f"images[1][2][3] is 99; {PIXELS}"),
    "wrong size": ({"images": [[[0] * 7] * 8]}, None, "each image must be 8x8, got 8x7"),
    "mismatched images": ({"images": [[[0] * 8] * 8, [[0] * 8] * 7]}, None, "images[1] is 7x8 but images[0] is 8x8"),
    "empty": ({"images": []}, None, "images must be a non-empty list"),
    "not a list": ({"images": "abc"}, None, "images must be a non-empty list"),
    "missing field": ({"pictures": [README_IMAGE]}, None, 'the field "images"'),
    "unknown field": ({"images": [README_IMAGE], "scale": 1}, None, 'unknown field(s) "scale"'),
    "malformed JSON": ('{"images": [[[0]]]', None, "the body is not valid JSON"),
    "no body": ("", None, "the body is not valid JSON"),
    "form body": ("images=1", "application/x-www-form-urlencoded",
                  "content-type must be application/json, got application/x-www-form-urlencoded"),
}


def post_bad(url: str, case: str) -> httpx.Response:
    body, media_type, _ = BAD[case]
    text = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{url}/predict", content=text.encode(), timeout=30,
                      headers={"content-type": media_type or "application/json", **SERVE_AUTH})


@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_request_gets_400_and_one_error_shape(served, case):
    r = post_bad(served["url"], case)
    assert r.status_code == 400, (r.status_code, r.text)
    assert set(r.json()) == {"error"} and BAD[case][2] in r.json()["error"], r.text


def test_too_large_a_batch_is_refused(served):
    limit = served["cfg"].serve.max_request_images
    r = predict(served["url"], {"images": [[[0] * 8] * 8] * (limit + 1)})
    assert r.status_code == 400
    assert r.json() == {"error": f"images holds {limit + 1} images; at most {limit} per request"}


def test_each_refusal_logs_one_warning_line_and_no_traceback(served):
    log = served["log"]
    offset = log.stat().st_size
    for case in BAD:
        assert post_bad(served["url"], case).status_code == 400
    assert predict(served["url"], {"images": [README_IMAGE]}).status_code == 200  # a marker after them

    def new_lines() -> list[str]:
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            return f.read().splitlines()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any("path=/predict" in line and "status=200" in line
                                                  for line in new_lines()):
        time.sleep(0.2)
    lines = new_lines()
    warnings = [line for line in lines if "[WARNING]" in line]
    assert len(warnings) == len(BAD), "\n".join(lines)
    assert all("refused a /predict request: " in line for line in warnings), "\n".join(warnings)
    assert not [line for line in lines if "Traceback" in line or "[ERROR]" in line], "\n".join(lines)


def test_the_openapi_ui_is_at_the_root_and_documents_the_error_shape(served):
    ui = httpx.get(served["url"] + "/", timeout=10)
    assert ui.status_code == 200 and ui.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in ui.text
    doc = httpx.get(served["url"] + "/docs.json", timeout=10).json()
    responses = doc["paths"]["/predict"]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    for status in ("400", "500"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        error = schemas[ref.rsplit("/", 1)[1]]
        assert error["properties"].keys() == {"error"} and error["required"] == ["error"], error
        assert error["additionalProperties"] is False
    assert '{"error": ' in doc["paths"]["/predict"]["post"]["description"]


def test_make_serve_takes_the_port(served):
    """`make serve PORT=N` runs `maas serve --port N`, which the session server shows serving."""
    project = served["log"].parent / "project"
    make = ["make", "-n", "-f", str(ROOT / "Makefile"), "-C", str(project), "-o", ".venv/.installed", f"BIN={BIN}",
            "serve"]
    assert "maas serve --port 3000" in subprocess.run(make, capture_output=True, text=True, check=True).stdout
    dry = subprocess.run([*make, "PORT=3311"], capture_output=True, text=True, check=True).stdout
    assert "maas serve --port 3311" in dry


class MakeDir:
    """Unpickling this creates a folder: proof that a pickle's payload ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def pickle_in_model_yaml(model_dir: Path, marker: Path) -> tuple[str, ...]:
    """The attack from issue 7: a `_target_` that reaches torch.load on a pickle shipped beside it."""
    import pickle

    import yaml

    (model_dir / "payload.pkl").write_bytes(pickle.dumps(MakeDir(marker)))
    spec = yaml.safe_load((model_dir / "model.yaml").read_text())
    spec["model"] = {"_target_": "maas.models.torch.cnn.torch.load", "_args_": [str(model_dir / "payload.pkl")],
                     "weights_only": False}
    (model_dir / "model.yaml").write_text(yaml.safe_dump(spec))
    return ("_target_",)


def nan_in_a_tensor(model_dir: Path, marker: Path) -> tuple[str, ...]:
    """NaN in a stored float tensor, with model.yaml's weights_sha256 updated to match."""
    import hashlib

    import yaml
    from safetensors.numpy import load_file, save_file

    from maas.model_files import FORMAT

    spec = yaml.safe_load((model_dir / "model.yaml").read_text())
    path = model_dir / spec["weights"]
    weights = load_file(str(path))
    name = sorted(k for k, v in weights.items() if np.issubdtype(v.dtype, np.floating))[0]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, str(path), metadata={"format": FORMAT})
    spec["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (model_dir / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return f"tensor '{name}' holds", "non-finite"


def damage_files(model_dir: Path, marker: Path) -> tuple[str, ...]:
    """Four ways a copy goes wrong, in one server start: every one of them must be named."""
    (model_dir / "preprocessor.json").unlink()
    weights = next(model_dir.glob("weights*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    card = bytearray((model_dir / "model_card.json").read_bytes())
    card[-2] ^= 0x01  # same size, still a file: only its sha256 can tell
    (model_dir / "model_card.json").write_bytes(bytes(card))
    (model_dir / "notes.txt").write_text("left here by hand\n")
    return ("preprocessor.json is missing", f"{weights.name} is 1000 bytes", "(truncated or partly copied)",
            "model_card.json has sha256", "notes.txt is there but was not packaged")


def forge_bento_manifest(home: Path, model_dir: Path) -> None:
    """Make the Bento's record of the model's files (bento.yaml) match the tampered ones, as someone
    who can write the whole store can: then only the checks behind the manifest can stop the model."""
    import yaml

    from maas.serving import integrity

    (bento_yaml,) = (home / "bentos").rglob("bento.yaml")
    info = yaml.safe_load(bento_yaml.read_text())
    info["args"][integrity.MANIFEST_ARG] = integrity.manifest(sorted(model_dir.iterdir()))
    bento_yaml.write_text(yaml.safe_dump(info, sort_keys=False))


@pytest.mark.parametrize("tamper, forged", [(damage_files, False), (pickle_in_model_yaml, True),
                                            (nan_in_a_tensor, True)],
                         ids=["damage_files", "pickle_in_model_yaml", "nan_in_a_tensor"])
def test_a_service_whose_model_was_tampered_with_exits_without_running_it(served, tmp_path, tamper, forged):
    """A model that fails its checks must stop the server, not leave it up answering nothing (or
    serving wrong answers), and nothing in the model directory may run. The Bento's manifest
    catches any change to the model's files; with it forged too, model.yaml's own checks and the
    finite-weights check still refuse the model."""
    home = own_store(served, tmp_path / "bentoml")
    marker = tmp_path / "payload-ran"
    model_dir = next(p.parent for p in (home / "models").rglob("maas/model.yaml"))  # ours, not BentoML's
    named = tamper(model_dir, marker)
    if forged:
        forge_bento_manifest(home, model_dir)
    proc = start([str(BIN / "bentoml"), "serve", served["bento_tag"], "--port", str(free_port())],
                 tmp_path / "broken.log", env={**os.environ, "BENTOML_HOME": str(home)})
    try:
        proc.wait(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode != 0
    log = (tmp_path / "broken.log").read_text()
    assert all(text in log for text in named), (named, log[-3000:])
    assert not marker.exists()
