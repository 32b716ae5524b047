"""Monitoring a served model for real: `maas serve` of the session's tiny Bento with the prediction log on
(MAAS_PREDICTION_LOG_DIR relative to where it is typed), held-out digits and the same digits with noise
sent over HTTP, then `maas monitor` on each part of the log as a user runs it; the request lines, the drift
gauges and every metric monitoring/ names, on that server's /metrics."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import BIN, serving_project
from maas import io
from maas.data.sources import read_raw
from maas.data.split_files import read_split
from maas.serving.prediction_log import read_log
from promql import DASHBOARD, RULES, dashboard_metrics, parse, rule_file_metrics

pytestmark = pytest.mark.slow
MARK = "PAYLOAD-MARK-5e1f"  # in every refused body: it must never reach a log
WINDOW = 250  # the drift gauges' window: the 270 held-out digits fill one


@pytest.fixture(scope="module")
def monitored(tiny_run, tmp_path_factory):
    cfg, _ = tiny_run
    work = tmp_path_factory.mktemp("serve-monitoring")
    with serving_project(cfg, work, MAAS_PREDICTION_LOG_DIR="logs/predictions", MAAS_PREDICTION_LOG_SAMPLE="1",
                         MAAS_SERVE_DRIFT_WINDOW=str(WINDOW)) as url:
        yield {"url": url, "cfg": cfg, "project": work / "project", "log": work / "serve.log"}


def metrics(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def wait_for_windows(url: str, n: int) -> dict[str, float]:
    """/metrics once the recorder's thread has completed `n` drift windows."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (m := metrics(url)).get("maas_drift_windows_total", 0) >= n:
            return m
        time.sleep(0.2)
    raise AssertionError(f"no {n} drift windows in 30 s: {metrics(url)}")


def send(client: httpx.Client, url: str, images: np.ndarray, prefix: str) -> list[httpx.Response]:
    out = []
    for i, start in enumerate(range(0, len(images), 2)):  # requests of 2 images
        out.append(client.post(f"{url}/predict", json={"images": images[start:start + 2].tolist()},
                               headers={"X-Request-ID": f"{prefix}-{i}"}))
        assert out[-1].status_code == 200, out[-1].text
        assert out[-1].headers["x-request-id"] == f"{prefix}-{i}"
    return out


def split_log(folder: Path, dest: Path, prefix: str) -> Path:
    """The log's records of the requests whose id starts with `prefix`, as a log folder of their own."""
    dest.mkdir()
    records = [r for r in read_log(folder) if r["request_id"].startswith(prefix)]
    (dest / "predictions-0-0-0001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return dest


def test_noisy_digits_cross_the_monitors_thresholds_and_held_out_ones_do_not(monitored, tmp_path, monkeypatch):
    from maas.cli import main

    url, cfg, project = monitored["url"], monitored["cfg"], monitored["project"]
    test = read_split(cfg.paths.processed, "test")
    raw = read_raw(cfg).iloc[test["index"]]
    clean = raw[[c for c in raw.columns if c.startswith("pixel_")]].to_numpy().reshape(-1, 8, 8)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 4, clean.shape).round(), 0, 16).astype(int)

    with httpx.Client(timeout=30) as client:
        send(client, url, clean, "clean")
        before = wait_for_windows(url, 1)  # the first window: held-out digits only
        send(client, url, noisy, "noisy")
        refused = [client.post(f"{url}/predict", json={"images": clean[:1].tolist(), "note": MARK},
                               headers={"X-Request-ID": "noisy-refused-0"}),
                   client.post(f"{url}/predict", content=f"{MARK} is not JSON".encode(),
                               headers={"content-type": "application/json", "X-Request-ID": "noisy-refused-1"}),
                   client.post(f"{url}/predict", json={"images": [[[7] * 7] * 8], "note": MARK})]
    assert [r.status_code for r in refused] == [400, 400, 400]
    after = wait_for_windows(url, 2)  # the second: 20 held-out digits and 230 noisy ones
    psi = 'maas_input_drift{statistic="psi"}'
    print(f"drift gauges: held-out window PSI {before[psi]:.4f}, class shift {before['maas_prediction_class_shift']:.4f}; "
          f"noisy window PSI {after[psi]:.4f}, class shift {after['maas_prediction_class_shift']:.4f}")
    assert before[psi] < 0.25 <= after[psi]
    assert before["maas_prediction_class_shift"] < 0.25 <= after["maas_prediction_class_shift"]
    assert before["maas_drift_window_inputs"] == WINDOW

    # Every request has its JSON line; a refused one keeps its error, never its body.
    log = monitored["log"].read_text()
    lines = {r["request_id"]: r for r in (json.loads(line) for line in log.splitlines() if line.startswith('{"time"'))}
    assert lines["clean-0"]["status"] == 200 and lines["clean-0"]["batch_size"] == 2
    assert lines["clean-0"]["model_tag"] == cfg.serve.model_name + ":" + lines["clean-0"]["model_tag"].split(":")[1]
    assert lines["clean-0"]["latency_ms"] > 0 and lines["clean-0"]["forward_batch"] >= 2
    assert lines["noisy-refused-0"]["status"] == 400 and 'unknown field(s) "note"' in lines["noisy-refused-0"]["error"]
    assert sum(1 for r in lines.values() if r["path"] == "/predict") == len(clean) // 2 * 2 + 3
    folder = project / "logs" / "predictions"  # relative to where `maas serve` was typed
    logged = "".join(p.read_text() for p in folder.iterdir())
    assert MARK not in log and MARK not in logged
    assert [r for r in read_log(folder) if r["status"] == 400][0].keys() == {
        "time", "request_id", "model_tag", "status", "sample", "error"}

    # `maas monitor` on each part of the log: as a user types it, and (a second process costs seconds) in process.
    run = subprocess.run([str(BIN / "maas"), "monitor", str(split_log(folder, tmp_path / "clean", "clean")),
                          "--out", str(tmp_path / "report-clean")], cwd=project, capture_output=True, text=True)
    print(run.stdout.splitlines()[0])
    monkeypatch.chdir(project)
    noisy_code = main(["monitor", str(split_log(folder, tmp_path / "noisy", "noisy")),
                       "--out", str(tmp_path / "report-noisy")])
    clean_summary, noisy_summary = (io.read_json(tmp_path / f"report-{n}" / "summary.json") for n in ("clean", "noisy"))
    assert (run.returncode, noisy_code) == (0, 1), run.stdout + run.stderr
    assert clean_summary["inputs"] == noisy_summary["inputs"] == len(clean)
    assert noisy_summary["requests"]["refused"] == 2 and "rejected_rate" not in noisy_summary["crossed"]
    assert noisy_summary["crossed"] == ["feature_drift", "class_shift"]
    assert clean_summary["features"]["worst"]["psi"] < 0.25 < noisy_summary["features"]["worst"]["psi"]
    assert (tmp_path / "report-noisy" / "report.html").read_text().count("data:image/png;base64,") == 3


def test_every_metric_the_dashboard_and_alert_rules_name_is_on_metrics(monitored):
    httpx.post(f"{monitored['url']}/predict", json={"images": [[[0] * 8] * 8]}, timeout=30)  # a request at least
    served = {series.split("{")[0] for series in metrics(monitored["url"])}
    assert parse("maas_input_drift") <= served
    missing = (dashboard_metrics(DASHBOARD) | rule_file_metrics(RULES)) - served
    assert not missing, f"monitoring/ names metrics the server does not expose: {sorted(missing)}"
