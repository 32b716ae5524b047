"""The pipeline as a Prefect flow, against a real Prefect server (SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT, tiny_overrides
from maas.backends.torch.checkpoint import read_spec

pytestmark = pytest.mark.slow

STAGES = ["validate", "preprocess", "train", "evaluate", "compress", "package"]


def run_flow(api: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.run([sys.executable, "flows/pipeline.py", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def flow_runs(api: str) -> list[dict]:
    runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC"}).json()
    return [r for r in runs if r["name"]]


def test_flow_runs_every_stage_as_a_task_with_overrides_as_parameters(prefect_server, tmp_path, raw_dir):
    overrides = [*tiny_overrides(tmp_path, raw_dir), "model.channels=16"]
    done = run_flow(prefect_server, *overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run = next(r for r in flow_runs(prefect_server) if r["parameters"].get("overrides") == overrides)
    assert run["state_type"] == "COMPLETED"
    tasks = httpx.post(f"{prefect_server}/task_runs/filter",
                       json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    # Task runs are named <task>-<suffix>, in the order they started.
    assert [t["name"].rsplit("-", 1)[0] for t in sorted(tasks, key=lambda t: t["start_time"])] == STAGES
    assert all(t["state_type"] == "COMPLETED" for t in tasks)
    artifacts = httpx.post(f"{prefect_server}/artifacts/filter",
                           json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    assert any(a["key"] == "composed-config" and "channels: 16" in a["data"] for a in artifacts)
    # The override reached the stage: the trained model is 16 wide.
    assert read_spec(tmp_path / "trained")["model"]["channels"] == 16
    assert (tmp_path / "bento" / "bento.json").exists()


def test_a_failing_stage_fails_the_flow_and_skips_the_rest(prefect_server, tmp_path, raw_dir):
    overrides = [*tiny_overrides(tmp_path, raw_dir), "gates.min_test_accuracy=1.0"]
    done = run_flow(prefect_server, *overrides)
    assert done.returncode != 0
    assert "below gates.min_test_accuracy=1.0" in done.stdout + done.stderr
    run = next(r for r in flow_runs(prefect_server) if r["parameters"].get("overrides") == overrides)
    assert run["state_type"] == "FAILED"
    assert not (tmp_path / "compressed").exists() and not (tmp_path / "bento").exists()


def test_bad_override_fails_before_any_stage(prefect_server, tmp_path):
    done = run_flow(prefect_server, "trainer.epochz=3")
    assert done.returncode != 0 and "epochz" in done.stdout + done.stderr
