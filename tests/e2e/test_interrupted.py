"""A stage killed with SIGKILL (no cleanup code runs) leaves temp folders; its next run removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, ROOT, copy_outputs, tiny_overrides

pytestmark = pytest.mark.slow


def temps(*folders) -> list:
    return sorted(p for folder in folders if folder.exists() for p in folder.glob(".*.tmp"))


def test_the_next_run_of_a_killed_stage_removes_its_leftovers(tiny_run, tmp_path):
    from maas import registry

    cfg = copy_outputs(tiny_run[0], tmp_path, "processed", "trained", "reports")
    overrides = [*tiny_overrides(tmp_path, tmp_path / "unused"), f"paths.processed={cfg.paths.processed}"]
    proc = subprocess.Popen([str(BIN / "maas"), "stage", "train", *overrides, "trainer.epochs=500"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any("epoch   2/500" in line for line in [proc.stdout.readline()]):
                break
        assert proc.poll() is None, "train ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    reports, models = tmp_path / "reports", tmp_path
    left = temps(reports, models)
    assert left, "the killed run left no temp folder: the test would prove nothing"
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in left if p.is_dir())
    assert (tmp_path / "trained" / "weights.safetensors").exists()  # the last good model survived

    cfg.trainer.epochs = 1
    registry.get("train").run(cfg)
    assert temps(reports, models) == []


def saved_epoch(checkpoints) -> int:
    """The epoch the resume state on disk belongs to (0: none yet)."""
    import json

    states = list(checkpoints.glob("train-*/state.json"))
    return json.loads(states[0].read_text())["epoch"] if states else 0


def launch(overrides: list[str]) -> subprocess.Popen:
    """`maas stage train` in its own process (and process group)."""
    return subprocess.Popen([str(BIN / "maas"), "stage", "train", *overrides], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)


def finish(proc: subprocess.Popen, kill_when_saved: tuple | None = None) -> str:
    """Wait for a launched run; with `kill_when_saved=(checkpoints, n)`, SIGKILL it as soon as the
    state of epoch n or later is on disk (training goes on meanwhile, as it would)."""
    try:
        if kill_when_saved:
            checkpoints, n = kill_when_saved
            deadline = time.monotonic() + 120
            while saved_epoch(checkpoints) < n and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
        text = proc.communicate()[0]
    finally:
        proc.wait()
    assert (proc.returncode == -signal.SIGKILL) if kill_when_saved else proc.returncode == 0, text[-3000:]
    return text


def test_a_killed_training_run_resumes_and_ends_bit_identical(tiny_run, tmp_path):
    from maas import io

    cfg = tiny_run[0]
    common = [*tiny_overrides(tmp_path, tmp_path / "unused"), f"paths.processed={cfg.paths.processed}",
              "trainer.epochs=4", "trainer.label_smoothing=0.1", "trainer.grad_clip_norm=1.0"]

    def apart(name: str) -> list[str]:  # outputs of its own, so it can run beside another
        return [f"paths.trained={tmp_path / name}", f"paths.reports={tmp_path / name / 'reports'}"]

    # The uninterrupted reference shares no output with the others, so it runs beside them: a run
    # costs mostly its start (imports), not its epochs.
    whole = launch([*common, *apart("whole"), "trainer.resume=false"])
    finish(launch(common), kill_when_saved=(tmp_path / "checkpoints", 2))
    n = saved_epoch(tmp_path / "checkpoints")
    assert 2 <= n < 4, "the killed run saved no state of epoch 2 or later"
    # A different config never resumes another run's state, and leaves it for the run it belongs to.
    assert "resumed" not in finish(launch([*common, *apart("other"), "trainer.label_smoothing=0.0"]))
    out = finish(launch(common))
    assert f"train: resumed from epoch {n} " in out, out[-3000:]
    assert f"epoch {n:3d}/4" not in out and f"epoch {n + 1:3d}/4" in out  # finished epochs are not run again
    finish(whole)
    assert io.file_sha256(tmp_path / "trained" / "weights.safetensors") == \
        io.file_sha256(tmp_path / "whole" / "weights.safetensors")
    assert not list((tmp_path / "checkpoints").glob("train-*")), "a finished run leaves no state behind"
