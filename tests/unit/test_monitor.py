"""`maas monitor` on prediction logs written by the server's own writer: digits as they come (held-out rows)
against the same rows with noise added and a skewed answer, compared with the training profile a package
stage would store. The served model over HTTP is tests/e2e/test_serve_monitoring.py's."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from conftest import make_project
from maas import io
from maas.data.profile import training_profile
from maas.data.sources import read_raw
from maas.serving.prediction_log import LogFile


def write_log(folder, images, classes, refused=0, model_tag="maas-digits:m1", hours_ago=0.0):
    when = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat()
    log = LogFile(folder, max_file_bytes=1 << 16, max_files=100)
    lines = []
    for i in range(0, len(images), 3):  # requests of up to 3 images
        lines.append({"time": when, "request_id": f"r{i}", "model_tag": model_tag, "status": 200, "sample": 1.0,
                      "images": images[i:i + 3].tolist(), "classes": classes[i:i + 3].tolist(),
                      "probabilities": [[1.0]] * len(classes[i:i + 3])})
    lines += [{"time": when, "request_id": f"bad{i}", "model_tag": model_tag, "status": 400, "sample": 1.0,
               "error": "each image must be 8x8, got 8x7"} for i in range(refused)]
    log.write([json.dumps(line) for line in lines])
    log.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory, raw_dir):
    """A project whose packaged model's profile is that of the first 1,200 digits; the other 597 are 'served'."""
    from conftest import tiny_overrides
    from maas.config import compose
    from maas.params_file import write_params

    work = tmp_path_factory.mktemp("monitor")
    cfg = compose(tiny_overrides(work, raw_dir))
    frame = read_raw(cfg)
    bento = work / "bento"
    io.write_json(bento / "profile.json", training_profile(frame.iloc[:1200], cfg))
    io.write_json(bento / "bento.json", {"bento_tag": "maas-digits:b1", "model_tag": "maas-digits:m1",
                                         "archive": "maas-digits.bento", "profile": "profile.json"})
    root = make_project(work / "project")
    write_params(cfg, root / "params.yaml")
    pixels = frame[[c for c in frame.columns if c.startswith("pixel_")]].to_numpy()[1200:].reshape(-1, 8, 8)
    labels = frame["label"].to_numpy()[1200:]
    noisy = np.clip(pixels + np.random.default_rng(0).normal(0, 4, pixels.shape).round(), 0, 16).astype(int)
    write_log(work / "clean", pixels, labels, refused=5)
    write_log(work / "clean", pixels[:30], labels[:30], model_tag="maas-digits:older")  # another model's: left out
    write_log(work / "clean", noisy[:200], labels[:200], hours_ago=48)  # before monitor.since_hours: left out
    write_log(work / "noisy", noisy, np.where(np.arange(len(labels)) % 3 == 0, labels, 8), refused=90)
    return root, work


def test_unshifted_digits_pass_and_noisy_ones_cross_every_threshold(project, monkeypatch, capsys):
    from maas.cli import main

    root, work = project
    monkeypatch.chdir(root)
    assert main(["monitor", str(work / "clean"), "--out", str(work / "out-clean")]) == 0
    said = capsys.readouterr().out
    assert "monitor: 597 logged inputs in 204 requests, 5 refused (2.5%)" in said, said
    assert "(10 records of other models left out: maas-digits:older)" in said and ": ok (feature_drift" in said
    clean = io.read_json(work / "out-clean" / "summary.json")
    assert clean["status"] == "ok" and clean["crossed"] == []
    assert clean["features"]["worst"]["psi"] < 0.1 and clean["classes"]["psi"] < 0.05  # noise in held-out rows

    assert main(["monitor", str(work / "noisy"), "--out", str(work / "out-noisy")]) == 1
    said = capsys.readouterr().out
    assert ": ALERT monitor.feature_drift" in said and "monitor.class_shift" in said and "monitor.rejected_rate" in said
    noisy = io.read_json(work / "out-noisy" / "summary.json")
    assert noisy["crossed"] == ["feature_drift", "class_shift", "rejected_rate"]
    assert noisy["features"]["worst"]["psi"] > 1.0 and len(noisy["features"]["failed"]) >= 15
    assert noisy["classes"]["observed"]["8"] > 0.6 and noisy["requests"]["rejected_rate"] == pytest.approx(90 / 289, abs=1e-6)
    page = (work / "out-noisy" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<strong>CROSSED</strong>" in page  # drift, pixels, classes

    # Thresholds set on the command line (conf/ composed with the overrides, as `maas stage` does), a key typed wrong.
    assert main(["monitor", str(work / "noisy"), "--out", str(work / "out-2"), f"paths.bento={work / 'bento'}",
                 "monitor.feature_drift=null", "monitor.class_shift=null", "monitor.rejected_rate=0.5"]) == 0
    capsys.readouterr()
    assert main(["monitor", str(work / "noisy"), "monitor.clas_shift=1"]) == 2
    assert "did you mean monitor.class_shift?" in capsys.readouterr().err


def test_a_missing_log_or_packaged_model_is_named(project, monkeypatch, capsys, tmp_path):
    from maas.cli import main

    root, work = project
    monkeypatch.chdir(root)
    assert main(["monitor", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder: point `maas monitor` at the server's prediction log" in capsys.readouterr().err
    elsewhere = shutil.copytree(root, tmp_path / "project")
    monkeypatch.chdir(elsewhere)
    assert main(["monitor", str(work / "clean"), f"paths.bento={tmp_path / 'no-bento'}"]) == 2
    assert "nothing to compare the prediction log with: no model is packaged yet" in capsys.readouterr().err
