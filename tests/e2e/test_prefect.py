"""The pipeline as a Prefect flow, against a real Prefect server (SQLite)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from conftest import BIN, ROOT, tiny_overrides
from maas.model_files import read_spec

pytestmark = pytest.mark.slow

STAGES = ["validate", "preprocess", "train", "evaluate", "compress", "package"]


def run_flow(api: str | None, *overrides: str) -> subprocess.CompletedProcess:
    """`python flows/pipeline.py` from the project root; api=None: no PREFECT_API_URL, so
    Prefect starts a temporary server for the run (the path a new user takes)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if api:
        env["PREFECT_API_URL"] = api
    return subprocess.run([sys.executable, "flows/pipeline.py", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def noise(output: str) -> list[str]:
    """Lines of a run's output that cry wolf: ERROR-level logs and telemetry complaints."""
    return [line for line in output.splitlines() if "ERROR" in line or "telemetry" in line.lower()]


def readme_command(prefix: str) -> str:
    """The one command line in the README's Prefect section that starts with `prefix`,
    with the project's .venv/bin/ standing for this interpreter's scripts."""
    section = (ROOT / "README.md").read_text().split("## Run it with Prefect", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"README's Prefect section has {len(lines)} lines starting with {prefix!r}"
    return lines[0].replace(".venv/bin/", f"{BIN}/")


def shell(command: str, api: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PREFECT_API_URL": api}, timeout=120)


def flow_runs(api: str) -> list[dict]:
    runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC"}).json()
    return [r for r in runs if r["name"]]


def test_flow_runs_every_stage_as_a_task_with_overrides_as_parameters(prefect_server, prefect_home,
                                                                      tmp_path, raw_dir):
    overrides = [*tiny_overrides(tmp_path, raw_dir), "model.channels=16"]
    done = run_flow(prefect_server, *overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # A run where nothing failed says so: no ERROR lines, no telemetry complaints, in the
    # run's output or in the server's log (the server started in the project root: prefect.toml).
    assert noise(done.stdout + done.stderr) == []
    assert noise((prefect_home / "server.log").read_text()) == []
    # The run's summary is printed as JSON, one entry per stage.
    summary = re.search(r"^\{\n.*^\}$", done.stdout, re.M | re.S)
    assert summary and list(json.loads(summary.group())) == STAGES, done.stdout[-3000:]

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
    # The README's command reads it back: the whole record, then just the YAML.
    command = readme_command(".venv/bin/prefect api GET /artifacts/composed-config/latest")
    record = shell(command.split(" | ")[0], prefect_server)
    assert record.returncode == 0, record.stdout + record.stderr
    assert json.loads(record.stdout)["flow_run_id"] == run["id"]
    printed = shell(command, prefect_server)
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert printed.stdout.startswith("```yaml\n"), printed.stdout
    assert re.search(r"^model:\n(?:  .*\n)*?  channels: 16\n", printed.stdout, re.M), printed.stdout
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
    assert "below gates.min_test_accuracy=1.0" in run["state"]["message"]  # the run says why, in the UI too
    assert "Traceback" not in done.stdout + done.stderr  # an expected failure is one line, not a stack
    assert not (tmp_path / "compressed").exists() and not (tmp_path / "bento").exists()
    # The stages before the failing one keep what they wrote; the failing one ran once (no retries).
    assert (tmp_path / "processed" / "preprocessor.json").exists() and (tmp_path / "trained").is_dir()
    tasks = httpx.post(f"{prefect_server}/task_runs/filter",
                       json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    assert {t["name"].rsplit("-", 1)[0]: t["run_count"] for t in tasks}["evaluate"] == 1


def test_bad_override_fails_before_any_stage_on_a_temporary_server():
    # No PREFECT_API_URL: Prefect starts (and stops) a temporary server, as for a new user.
    done = run_flow(None, "trainer.epochz=3")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "pipeline: error: unknown config key trainer.epochz" in output
    # No ERROR and no traceback: the flow run ends Failed with the key named, and the temporary
    # server reads prefect.toml in the project root, so it neither sends telemetry nor logs failing to.
    assert noise(output) == [] and "Traceback" not in output
    assert any("Finished in state Failed" in line and "trainer.epochz" in line for line in output.splitlines())


def test_prefect_artifact_inspect_still_fails_so_the_readme_documents_prefect_api(prefect_server):
    # Prefect 3.8.8's client sends `"flow_runs": null`; FastAPI >= 0.151 answers 422. When this
    # starts passing, document `prefect artifact inspect composed-config` in the README instead.
    done = shell(f"{BIN}/prefect artifact inspect composed-config", prefect_server)
    assert done.returncode != 0 and "422" in done.stdout + done.stderr, done.stdout + done.stderr


def test_transient_io_errors_are_retried_with_backoff_and_deterministic_failures_are_not(prefect_server):
    """The flow's stage tasks, on a real server, wrapping stage records as the registry's are wrapped."""
    import errno
    import runpy

    from prefect import flow
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from maas.errors import GateFailed
    from maas.stages import Stage

    stage_task = runpy.run_path(str(ROOT / "flows" / "pipeline.py"))["stage_task"]
    calls = {"remote": 0, "gate": 0, "bug": 0}

    def remote(cfg):  # a DVC remote that hangs up twice, then answers
        calls["remote"] += 1
        if calls["remote"] < 3:
            raise ConnectionResetError(errno.ECONNRESET, "remote hung up")
        return {"fetched": True}

    def gate(cfg):
        calls["gate"] += 1
        raise GateFailed("test accuracy 0.5 is below gates.min_test_accuracy=0.9")

    def bug(cfg):
        calls["bug"] += 1
        raise ValueError("a bug is not transient")

    tasks = {name: stage_task(Stage(name, fn, (), (), ()), None, retries=3, retry_delay_s=0.1)
             for name, fn in (("remote", remote), ("gate", gate), ("bug", bug))}
    assert tasks["remote"].retry_delay_seconds == [0.1, 0.2, 0.4]  # backoff doubles

    @flow
    def probe():
        return {name: t({}, return_state=True) for name, t in tasks.items()}

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        states = probe()
        APILogWorker.drain_all(timeout=5)  # send the logs now, while the server is up, not at exit
    assert calls == {"remote": 3, "gate": 1, "bug": 1}
    assert states["remote"].is_completed() and states["remote"].result() == {"fetched": True}
    assert states["gate"].is_failed() and states["gate"].message == \
        "gate: test accuracy 0.5 is below gates.min_test_accuracy=0.9"
    assert states["bug"].is_failed() and "a bug is not transient" in states["bug"].message
