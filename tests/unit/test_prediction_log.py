"""The prediction log's settings, its files (rotation by size, atomic renames, pruning, a cut-short last line),
and the recorder thread that writes it and the request lines, in process."""

from __future__ import annotations

import io as stdio
import json
import os
import time

import numpy as np
import pytest

from maas.errors import ConfigError
from maas.serving.prediction_log import CLOSED, OPEN, LogFile, LogRead, LogSettings, log_files, read_log
from maas.serving.recorder import Recorder, RequestInfo, image_inputs


def test_settings_come_from_the_config_and_the_environment_wins():
    config = {"dir": None, "sample": 0.1, "max_file_bytes": 4096, "max_files": 3}
    assert not LogSettings.from_mapping(config, environ={}).on
    on = LogSettings.from_mapping(config, environ={"MAAS_PREDICTION_LOG_DIR": "/var/log/maas",
                                                   "MAAS_PREDICTION_LOG_SAMPLE": "0.5"})
    assert (on.on, on.dir, on.sample, on.max_file_bytes) == (True, "/var/log/maas", 0.5, 4096)
    assert not LogSettings.from_mapping({**config, "dir": "/x", "sample": 0}, environ={}).on
    with pytest.raises(ConfigError, match=r"MAAS_PREDICTION_LOG_SAMPLE='lots' must be a number in \[0, 1\]"):
        LogSettings.from_mapping(config, environ={"MAAS_PREDICTION_LOG_SAMPLE": "lots"})
    with pytest.raises(ConfigError, match=r"MAAS_PREDICTION_LOG_SAMPLE=1.5 must be a number in \[0, 1\]"):
        LogSettings.from_mapping(config, environ={"MAAS_PREDICTION_LOG_SAMPLE": "1.5"})
    with pytest.raises(ConfigError, match="serve.prediction_log has no key smaple"):
        LogSettings.from_mapping({**config, "smaple": 1}, environ={})
    with pytest.raises(ConfigError, match=r"serve.prediction_log.max_files=0 must be a whole number >= 1"):
        LogSettings.from_mapping({**config, "max_files": 0}, environ={})


def test_files_rotate_by_size_keep_the_newest_and_read_back_in_order(tmp_path):
    log = LogFile(tmp_path, max_file_bytes=200, max_files=2)
    for i in range(12):
        log.write([json.dumps({"time": "2030-01-01T00:00:00+00:00", "status": 200, "i": i, "pad": "x" * 40})])
    closed, open_ = sorted(tmp_path.glob(f"*{CLOSED}")), sorted(tmp_path.glob(f"*{OPEN}"))
    assert len(closed) == 2 and len(open_) == 1  # rotated several times; the oldest closed files were deleted
    assert all(p.stat().st_size <= 200 for p in closed)
    numbers = [r["i"] for r in read_log(tmp_path)]
    assert numbers == sorted(numbers) and numbers[-1] == 11 and numbers[0] > 0  # newest kept, in order
    # A server killed mid-write leaves a cut-short line at the end of its open file: skipped and counted.
    with open(open_[0], "a") as f:
        f.write('{"time": "2030-01-01T00:00:00+00:00", "status": 2')
    stats = LogRead()
    assert [r["i"] for r in read_log(tmp_path, stats=stats)] == numbers and stats.unreadable_lines == 1
    log.close()
    assert not list(tmp_path.glob(f"*{OPEN}")) and len(log_files(tmp_path)) == 2  # closed on shutdown, pruned


def test_the_recorder_writes_request_lines_and_sampled_records_but_never_a_refused_body(tmp_path):
    out = stdio.StringIO()
    settings = LogSettings(dir=str(tmp_path), sample=1.0)
    recorder = Recorder(model_tag="maas-digits:abc", log=settings, field="images",
                        to_inputs=image_inputs((1, 2, 2), integer=True), drift=None, out=out)
    answered = RequestInfo("req-1", time.perf_counter(), time.time())
    rows = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.float32)
    recorder.answered(answered, rows, [3, 1], np.array([[0.1, 0.9], [0.8, 0.2]]))
    answered.forward_batch = 5
    recorder.finished(answered, "POST", "/predict", 200, None, predict=True)
    refused = RequestInfo("req-2", time.perf_counter(), time.time())
    recorder.finished(refused, "POST", "/predict", 400, "images[0] is not a list", predict=True)
    recorder.close()

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["request_id"], r["status"]) for r in lines] == [("req-1", 200), ("req-2", 400)]
    assert lines[0]["batch_size"] == 2 and lines[0]["forward_batch"] == 5 and lines[0]["latency_ms"] >= 0
    assert lines[0]["model_tag"] == "maas-digits:abc" and lines[1]["error"] == "images[0] is not a list"
    records = list(read_log(tmp_path))
    assert records[0]["images"] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]] and records[0]["classes"] == [3, 1]
    assert records[0]["probabilities"] == [[0.1, 0.9], [0.8, 0.2]] and records[0]["request_id"] == "req-1"
    assert records[1] == {"time": records[1]["time"], "request_id": "req-2", "model_tag": "maas-digits:abc",
                          "status": 400, "sample": 1.0, "error": "images[0] is not a list"}


def test_a_relative_log_folder_is_refused_where_the_server_runs(tmp_path):
    """BentoML runs the service in the Bento's own folder: a relative folder would land in the BentoML store
    (`maas serve` hands the server an absolute one)."""
    from maas.serving.recorder import start
    from maas.serving.schemas import ImageSpec

    (tmp_path / "serve.json").write_text(json.dumps({"prediction_log": {"dir": "logs"}}))
    with pytest.raises(ConfigError, match="the prediction log's folder 'logs' .* is relative"):
        start(tmp_path, model_tag="m:1", spec=ImageSpec((1, 8, 8), 0, 16, "int", 512), drift_window=10, table=False)


def test_a_log_that_cannot_be_written_is_counted_and_the_request_lines_go_on(tmp_path):
    import shutil

    from prometheus_client import REGISTRY

    def dropped() -> float:
        return REGISTRY.get_sample_value("maas_recorder_dropped_total", {"item": "prediction", "reason": "error"}) or 0

    out, before = stdio.StringIO(), dropped()
    recorder = Recorder(model_tag="m:1", log=LogSettings(dir=str(tmp_path / "log"), sample=1.0), field="images",
                        to_inputs=image_inputs((1, 2, 2), integer=True), drift=None, out=out)
    shutil.rmtree(tmp_path / "log")  # the folder is gone (an unmounted volume): no file can be opened
    for i in range(3):
        info = RequestInfo(f"r{i}", time.perf_counter(), time.time())
        recorder.answered(info, np.zeros((1, 4), np.float32), [0], np.ones((1, 1)))
        recorder.finished(info, "POST", "/predict", 200, None, predict=True)
        time.sleep(0.05)  # one drain each
    recorder.close()
    assert [json.loads(line)["request_id"] for line in out.getvalue().splitlines()] == ["r0", "r1", "r2"]
    assert dropped() - before == 3


def test_maas_serve_hands_the_server_a_relative_config_folder_as_an_absolute_one(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from maas.cli import _absolute_prediction_log

    monkeypatch.chdir(tmp_path)  # `maas serve` runs from the project root
    # Set, then deleted through monkeypatch: what the function sets is undone after the test, as an unset variable.
    monkeypatch.setenv("MAAS_PREDICTION_LOG_DIR", "-")
    monkeypatch.delenv("MAAS_PREDICTION_LOG_DIR")
    _absolute_prediction_log(OmegaConf.create({"serve": {"prediction_log": {"dir": "logs/predictions"}}}))
    assert os.environ["MAAS_PREDICTION_LOG_DIR"] == str(tmp_path / "logs" / "predictions")
    monkeypatch.setenv("MAAS_PREDICTION_LOG_DIR", "/var/log/maas")  # the environment's own stays as it is
    _absolute_prediction_log(OmegaConf.create({"serve": {"prediction_log": {"dir": "elsewhere"}}}))
    assert os.environ["MAAS_PREDICTION_LOG_DIR"] == "/var/log/maas"
