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
    from maas import stages

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
    stages.get("train").run(cfg)
    assert temps(reports, models) == []
