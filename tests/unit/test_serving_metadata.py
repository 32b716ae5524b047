"""In-process parts of issue 10's "what a caller needs": each refusal's reason, the service's
Prometheus counters, the model card /metadata serves, and the /docs.json additions."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from maas.model_card import build_card
from maas.serving import metrics
from maas.serving.metadata import CARD_FILE, load_card
from maas.serving.openapi import document, example_images
from maas.serving.schemas import EXAMPLE_IMAGE, BadRequest, ImageSpec, parse_body, to_batch

DIGITS = ImageSpec((1, 8, 8), 0.0, 16.0, "int", 10)


@pytest.mark.parametrize("body, reason", [
    (b'{"images": [', "not_json"),
    (b"", "not_json"),
    (b"[1, 2]", "bad_field"),
    (b'{"pictures": []}', "bad_field"),
    (b'{"images": [], "scale": 1}', "bad_field"),
    (b'{"images": []}', "bad_field"),
    (b'{"images": "abc"}', "bad_field"),
    (json.dumps({"images": [[[0] * 8] * 8] * 11}).encode(), "too_many_images"),
    (json.dumps({"images": [[[0] * 7] * 8]}).encode(), "shape"),
    (json.dumps({"images": [[[0] * 8] * 7 + [[0] * 7]]}).encode(), "shape"),
    (json.dumps({"images": [[[0] * 8] * 8, [[0] * 8] * 7]}).encode(), "shape"),
    (json.dumps({"images": [[[0] * 8] * 7 + [[0] * 7 + [99]]]}).encode(), "pixel"),
    (json.dumps({"images": [[[0] * 8] * 7 + [[0] * 7 + ["5"]]]}).encode(), "pixel"),
    (json.dumps({"images": [[[0] * 8] * 7 + [[0] * 7 + [0.5]]]}).encode(), "pixel"),
])
def test_each_refusal_names_its_reason(body, reason):
    with pytest.raises(BadRequest) as e:
        parse_body(body, DIGITS)
    assert e.value.reason == reason


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counters_count_each_class_and_reason():
    metrics.start(model_tag="maas-digits:abc", bento_tag="maas-digits:xyz", classes=range(10))
    assert REGISTRY.get_sample_value("maas_predictions_total", {"class": "9"}) is not None  # published at 0
    assert REGISTRY.get_sample_value("maas_rejected_requests_total", {"reason": "unauthorized"}) is not None
    before = {c: sample("maas_predictions_total", **{"class": c}) for c in ("3", "7")}
    pixel, shape = sample("maas_rejected_requests_total", reason="pixel"), sample("maas_rejected_requests_total",
                                                                                   reason="shape")
    metrics.count_predictions([3, 7, 3])
    metrics.count_rejection("pixel")
    metrics.count_rejection("pixel")
    assert sample("maas_predictions_total", **{"class": "3"}) == before["3"] + 2
    assert sample("maas_predictions_total", **{"class": "7"}) == before["7"] + 1
    assert sample("maas_rejected_requests_total", reason="pixel") == pixel + 2
    assert sample("maas_rejected_requests_total", reason="shape") == shape
    assert sample("maas_model_info", model_tag="maas-digits:abc", bento_tag="maas-digits:xyz") == 1


def test_an_unknown_reason_is_refused_so_label_values_stay_a_fixed_set():
    with pytest.raises(ValueError, match="'too_big'"):
        metrics.count_rejection("too_big")


def card_dir(tmp_path):
    spec = {"model": {"arch": "cnn", "channels": 8}, "input_shape": [1, 8, 8], "classes": list(range(10)),
            "training": {"epochs": 2, "best_epoch": 1}}
    config = {"model": {"arch": "cnn"}, "trainer": {"epochs": 2}, "paths": {"raw": "/home/me/data"},
              "serve": {"max_request_images": 512}}
    metrics_ = {"test": {"accuracy": 0.9, "macro_f1": 0.89, "samples": 270}, "val": {"accuracy": 0.91}}
    compression = {"chosen": "none", "variants": [{"method": "none", "bytes": 10, "accuracy": 0.91}]}
    validation = {"data_file": "data/raw/digits.csv", "data_md5": "118950e3156b0865eb0637374376d7f2", "rows": 1797,
                  "suite": "digits_raw"}
    card = build_card(model_tag="(pending)", spec=spec, metrics=metrics_, compression=compression,
                      validation=validation, config=config)
    (tmp_path / CARD_FILE).write_text(json.dumps({k: v for k, v in card.items() if k != "model_tag"}))
    return tmp_path


def test_the_served_card_adds_the_tags_and_the_checked_input_and_hides_build_paths(tmp_path):
    served = ImageSpec((1, 8, 8), 0.0, 16.0, "int", 64)
    card = load_card(card_dir(tmp_path), model_tag="maas-digits:abc", bento_tag="maas-digits:xyz", spec=served)
    body = json.loads(card.model_dump_json())
    assert body["model_tag"] == "maas-digits:abc" and body["bento_tag"] == "maas-digits:xyz"
    assert body["input"] == {"shape": [1, 8, 8], "dtype": "int", "min": 0, "max": 16, "max_request_images": 64}
    assert body["metrics"]["test"] == {"accuracy": 0.9, "macro_f1": 0.89, "samples": 270}
    assert body["data"]["md5"] == "118950e3156b0865eb0637374376d7f2"
    assert body["config"] == {"model": {"arch": "cnn"}, "trainer": {"epochs": 2}}  # no paths, no stale serve
    assert body["classes"] == list(range(10)) and body["training"]["epochs"] == 2


@pytest.mark.parametrize("spec", [DIGITS, ImageSpec((1, 8, 8), 0.0, 1.0, "float", 5),
                                  ImageSpec((3, 4, 5), -1.5, 1.5, "float", 5), ImageSpec((1, 28, 28), 0, 255, "int", 5)])
def test_the_docs_example_is_a_batch_the_served_spec_accepts(spec):
    images = example_images(spec)
    assert to_batch(images, spec).shape == (1, spec.shape[0] * spec.shape[1] * spec.shape[2])
    assert (images == [EXAMPLE_IMAGE]) == (spec is DIGITS)  # the real digit wherever it fits


def test_docs_gain_get_metadata_and_the_predict_example():
    doc = {"paths": {"/predict": {"post": {"requestBody": {"content": {"application/json": {"schema": {}}}}}}},
           "components": {"schemas": {}}}
    document(doc, DIGITS)
    ref = doc["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schemas = doc["components"]["schemas"]
    card = schemas[ref.rsplit("/", 1)[1]]
    assert {"model_tag", "bento_tag", "metrics", "input", "data", "config"} <= card["properties"].keys()
    # pydantic's $defs moved to components, where $ref points; `input` is an image's or a table's.
    nested = [card["properties"]["data"]["$ref"], *(s["$ref"] for s in card["properties"]["input"]["anyOf"])]
    assert len(nested) == 3
    assert all(ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas for ref in nested)
    assert doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"] == {
        "images": [EXAMPLE_IMAGE]}
