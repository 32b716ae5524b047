"""What a caller needs from the served Bento, over real HTTP on the session's `maas serve`:
the model card at GET /metadata, the service's counters on /metrics, a /docs.json example that works."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import SERVE_AUTH
from maas import io
from maas.data.split_files import read_split

pytestmark = pytest.mark.slow

ZERO = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
        [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
        [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]  # scikit-learn's digits.images[0]


def test_metadata_is_the_card_of_the_served_bento(served):
    cfg = served["cfg"]
    r = httpx.get(served["url"] + "/metadata", headers=SERVE_AUTH, timeout=10)
    assert r.status_code == 200, r.text
    card = r.json()
    built = json.loads((Path(cfg.paths.bento) / "bento.json").read_text())  # what the package stage built
    assert card["bento_tag"] == served["bento_tag"] == built["bento_tag"]
    assert card["model_tag"] == built["model_tag"]
    assert card["metrics"] == io.read_json(Path(cfg.paths.reports) / "metrics.json")
    assert card["metrics"]["test"]["samples"] == len(read_split(cfg.paths.processed, "test")["index"])
    assert card["classes"] == list(range(10))
    assert card["input"] == {"shape": [1, 8, 8], "dtype": "int", "min": 0, "max": 16,
                             "max_request_images": cfg.serve.max_request_images}
    raw = next(Path(cfg.paths.raw).glob("*.csv"))
    assert card["data"]["md5"] == hashlib.md5(raw.read_bytes()).hexdigest()
    assert card["data"]["rows"] == 1797  # scikit-learn's digits
    assert card["config"]["trainer"] == OmegaConf.to_container(cfg.trainer, resolve=True)
    assert card["config"]["model"]["arch"] == cfg.model.arch and "paths" not in card["config"]
    assert card["compression"] == io.read_json(Path(cfg.paths.reports) / "compression.json")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples
            if s.name.startswith("maas_")}


def post(url: str, text: str, media_type: str = "application/json", key: bool = True) -> httpx.Response:
    return httpx.post(url + "/predict", content=text.encode(), timeout=30,
                      headers={"content-type": media_type, **(SERVE_AUTH if key else {})})


# Refused requests of known kinds, and the reason each must be counted under.
REFUSALS = [
    ('{"images": [', "application/json", "not_json"),
    (json.dumps({"pictures": [ZERO]}), "application/json", "bad_field"),
    (json.dumps({"images": [[[0] * 7] * 8]}), "application/json", "shape"),
    (json.dumps({"images": [ZERO[:7] + [[0] * 7 + [99]]]}), "application/json", "pixel"),
    (json.dumps({"images": [ZERO[:7] + [[0] * 7 + [0.5]]]}), "application/json", "pixel"),
    ("images=1", "application/x-www-form-urlencoded", "content_type"),
]


def test_metrics_count_each_prediction_by_class_and_each_refusal_by_reason(served):
    url, limit = served["url"], served["cfg"].serve.max_request_images
    before = scrape(url)
    rng = np.random.default_rng(0)
    batches = [[ZERO], [ZERO, np.fliplr(ZERO).tolist()], rng.integers(0, 17, (5, 8, 8)).tolist()]
    answered = Counter()
    for images in batches:
        r = post(url, json.dumps({"images": images}))
        assert r.status_code == 200, r.text
        answered.update(r.json()["classes"])
    refused = Counter()
    for text, media_type, reason in [*REFUSALS, (json.dumps({"images": [ZERO] * (limit + 1)}), "application/json",
                                                 "too_many_images")]:
        assert post(url, text, media_type).status_code == 400
        refused[reason] += 1
    assert post(url, json.dumps({"images": [ZERO]}), key=False).status_code == 401
    refused["unauthorized"] += 1
    after = scrape(url)

    def increase(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert sum(answered.values()) == 8  # one count per image, not per request
    for c in range(10):
        assert increase("maas_predictions_total", **{"class": str(c)}) == answered[c], c
    for reason in ("not_json", "bad_field", "shape", "pixel", "content_type", "too_many_images", "unauthorized"):
        assert increase("maas_rejected_requests_total", reason=reason) == refused[reason], reason
    assert refused["pixel"] == 2
    info = {labels: v for (name, labels), v in after.items() if name == "maas_model_info"}
    card = httpx.get(url + "/metadata", headers=SERVE_AUTH, timeout=10).json()
    assert info == {(("bento_tag", served["bento_tag"]), ("model_tag", card["model_tag"])): 1.0}


def test_the_docs_example_for_predict_posted_as_is_gets_200(served):
    doc = httpx.get(served["url"] + "/docs.json", timeout=10).json()
    example = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example == {"images": [ZERO]}  # a real digit, not a made-up pattern
    r = httpx.post(served["url"] + "/predict", json=example, headers=SERVE_AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["classes"]) == 1


def test_the_docs_document_get_metadata(served):
    doc = httpx.get(served["url"] + "/docs.json", timeout=10).json()
    ref = doc["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    card = httpx.get(served["url"] + "/metadata", headers=SERVE_AUTH, timeout=10).json()
    assert card.keys() == schema["properties"].keys()
    assert httpx.post(served["url"] + "/metadata", headers=SERVE_AUTH, timeout=10).status_code == 405
