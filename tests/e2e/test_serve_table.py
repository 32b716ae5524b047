"""A table model over real HTTP: data=wine through validate..package on the tiny settings, then `maas serve`
from a project whose BentoML store is empty and without the venv on PATH; JSON rows in, the pipeline's answers out."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import BIN, serving_project, tiny_overrides
from maas import io
from maas.data.split_files import read_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wine_served(tmp_path_factory):
    from maas.config import compose
    from maas.data.sources import export
    from maas.registry import all_stages

    work = tmp_path_factory.mktemp("serve-table")
    cfg = compose(["data=wine", *tiny_overrides(work, work / "raw")])
    export(cfg)
    for stage in all_stages():
        stage.run(cfg)

    # The prediction log on for every request, and drift windows of 5 rows: a table's path through both.
    with serving_project(cfg, work, MAAS_PREDICTION_LOG_DIR=str(work / "predictions"), MAAS_PREDICTION_LOG_SAMPLE="1",
                         MAAS_SERVE_DRIFT_WINDOW="5") as url:
        yield {"url": url, "cfg": cfg, "work": work}


def predict(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=60)


def test_json_rows_get_the_answers_the_pipeline_measured_and_bad_rows_a_400_naming_the_column(wine_served):
    from maas import model_files
    from maas.data.sources import read_raw

    cfg, url = wine_served["cfg"], wine_served["url"]
    test = read_split(cfg.paths.processed, "test")
    raw = read_raw(cfg).iloc[test["index"]]
    rows = raw[list(cfg.data.features)].to_dict("records")  # the raw values, as a client holding the table sends them
    assert raw[cfg.data.label_column].tolist() == test["y"].tolist()

    r = predict(url, {"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    # In process, the served (compressed) model on the preprocess stage's own rows.
    expected = model_files.load(cfg.paths.compressed).predictor.predict(test["x"]).proba
    assert body["classes"] == expected.argmax(1).tolist()
    assert body["probabilities"] == expected.astype(float).round(6).tolist()  # the service rounds to 6 places
    compression = io.read_json(Path(cfg.paths.reports) / "compression.json")
    assert np.mean(np.array(body["classes"]) == test["y"]) == compression["served_test_accuracy"]
    # One row per request, batched with whatever else arrives: the same answers.
    singles = [predict(url, {"rows": [row], "return_probabilities": False}).json() for row in rows[:5]]
    assert [s["classes"][0] for s in singles] == body["classes"][:5]
    assert all(s["probabilities"] == [] for s in singles)

    # null where the missing policy fills (wine: the training mean) is a value; the preprocessor's fill applies.
    filled = predict(url, {"rows": [{**rows[0], "alcohol": None}]})
    assert filled.status_code == 200, filled.text
    mean = rows[0] | {"alcohol": next(c["fill"] for c in
                                      io.read_json(Path(cfg.paths.processed) / "preprocessor.json")["columns"]
                                      if c["name"] == "alcohol")}
    assert filled.json() == predict(url, {"rows": [mean]}).json()

    # The most extreme values accepted still get a finite answer (JSON has no NaN).
    card = httpx.get(f"{url}/metadata", timeout=10).json()
    for bound in ("min", "max"):
        edge = predict(url, {"rows": [{c["name"]: c[bound] for c in card["input"]["columns"]}]})
        assert edge.status_code == 200 and np.isfinite(edge.json()["probabilities"]).all(), edge.text

    refused = {
        "missing": predict(url, {"rows": [rows[0], {k: v for k, v in rows[1].items() if k != "proline"}]}),
        "mistyped": predict(url, {"rows": [{**rows[0], "hue": "1.04"}]}),
        "unknown": predict(url, {"rows": [{**rows[0], "label": 1}]}),
        "images": predict(url, {"images": [[[0] * 8] * 8]}),
    }
    assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 400)
    errors = {k: r.json()["error"] for k, r in refused.items()}
    assert errors["missing"] == 'rows[1] has no column "proline"'
    assert errors["mistyped"] == 'rows[0]["hue"] is "1.04"; "hue" takes a finite number, or null for a missing value'
    assert errors["unknown"].startswith('rows[0] has an unknown column "label"; each row has exactly the columns '
                                        '"alcohol", ')
    assert errors["images"].startswith('the body must be a JSON object with the field "rows"')

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'maas_rejected_requests_total{reason="shape"} 2.0' in metrics
    assert 'maas_rejected_requests_total{reason="pixel"} 1.0' in metrics
    server_errors = [ln for ln in metrics.splitlines() if 'http_response_code="5' in ln]
    assert server_errors and all(float(ln.rsplit(" ", 1)[1]) == 0 for ln in server_errors), server_errors  # no 5xx


def test_the_card_and_the_document_describe_the_columns_and_the_fuzzer_finds_nothing(wine_served, tmp_path):
    cfg, url = wine_served["cfg"], wine_served["url"]
    features = list(cfg.data.features)
    card = httpx.get(f"{url}/metadata", timeout=10).json()
    assert [c["name"] for c in card["input"]["columns"]] == features
    assert {c["type"] for c in card["input"]["columns"]} == {"numeric"} and card["classes"] == [0, 1, 2]
    assert card["input"]["max_request_rows"] == cfg.serve.max_request_images
    assert "table rows" in (Path(cfg.paths.reports) / "model_card.md").read_text()

    doc = httpx.get(f"{url}/docs.json", timeout=10).json()
    schema = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    row = schema["schema"]["properties"]["rows"]["items"]
    assert list(row["properties"]) == row["required"] == features and row["additionalProperties"] is False
    assert {p["type"] for p in row["properties"].values()} == {"number"}
    assert predict(url, schema["example"]).status_code == 200  # what Swagger UI's "Try it out" sends

    # Fuzzed from that document, as tests/e2e/test_serve_fuzz.py does for images: ~200 requests, ~8 s (mostly
    # schemathesis's coverage phase: every documented bound, type and enum, and violations of each).
    out = subprocess.run([str(BIN / "st"), "run", f"{url}/docs.json", "--include-path", "/predict",
                          "--include-method", "POST", "--max-examples", "10", "--seed", "10",
                          "--request-timeout", "30"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "No issues found" in out.stdout, out.stdout[-8000:] + out.stderr[-2000:]
    bento = json.loads((Path(cfg.paths.bento) / "bento.json").read_text())
    assert card["bento_tag"] == bento["bento_tag"]


def test_the_prediction_log_holds_rows_as_sent_and_the_monitor_and_gauges_read_them(wine_served):
    from maas.data.sources import read_raw
    from maas.monitoring.compare import compare
    from maas.serving.prediction_log import read_log

    cfg, url, folder = wine_served["cfg"], wine_served["url"], wine_served["work"] / "predictions"
    test = read_split(cfg.paths.processed, "test")
    rows = read_raw(cfg).iloc[test["index"]][list(cfg.data.features)].to_dict("records")[:5]
    rows.append({**rows[0], "alcohol": None})  # null where the preprocessor fills it: logged as sent
    r = httpx.post(f"{url}/predict", json={"rows": rows}, headers={"X-Request-ID": "wine-log-1"}, timeout=60)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while not (found := [x for x in read_log(folder) if x["request_id"] == "wine-log-1"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    [record] = found
    assert record["rows"] == rows and record["classes"] == r.json()["classes"]
    summary = compare(cfg, folder)  # against the packaged wine model's profile: every column, by name
    assert summary["kind"] == "rows" and set(summary["features"]["columns"]) == set(cfg.data.features)
    assert "skipped" not in summary["features"] and summary["classes"]["rows"] == summary["inputs"] >= 6
    gauges = {line.split(" ")[0]: float(line.split(" ")[1]) for line in httpx.get(f"{url}/metrics").text.splitlines()
              if line.startswith(("maas_drift_windows_total", "maas_input_drift{"))}
    assert gauges["maas_drift_windows_total"] >= 1 and np.isfinite(gauges['maas_input_drift{statistic="psi"}'])
