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


def run_train(overrides: list[str], kill_after: str | None = None) -> str:
    """`maas stage train` in its own process; with `kill_after`, SIGKILL it once that text is printed."""
    proc = subprocess.Popen([str(BIN / "maas"), "stage", "train", *overrides], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if kill_after and kill_after in line:
                time.sleep(0.5)  # let the epoch's state reach the disk, as it would before a real kill
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait()
    text = "".join(out)
    assert (proc.returncode == -signal.SIGKILL) if kill_after else proc.returncode == 0, text[-3000:]
    return text


def test_a_killed_training_run_resumes_and_ends_bit_identical(tiny_run, tmp_path):
    from maas import io

    cfg = tiny_run[0]
    common = [*tiny_overrides(tmp_path, tmp_path / "unused"), f"paths.processed={cfg.paths.processed}",
              "trainer.epochs=6", "trainer.label_smoothing=0.1", "trainer.grad_clip_norm=1.0"]
    run_train([*common, f"paths.trained={tmp_path / 'whole'}", f"paths.reports={tmp_path / 'whole-reports'}",
               "trainer.resume=false"])
    run_train(common, kill_after="epoch   3/6")
    assert list((tmp_path / "checkpoints").glob("train-*/state.json")), "no training state was saved"
    out = run_train(common)
    assert "train: resumed from epoch 3" in out, out[-3000:]
    assert "epoch   3/6" not in out and "epoch   4/6" in out  # finished epochs are not run again
    assert io.file_sha256(tmp_path / "trained" / "weights.safetensors") == \
        io.file_sha256(tmp_path / "whole" / "weights.safetensors")
    assert not list((tmp_path / "checkpoints").glob("train-*")), "a finished run leaves no state behind"
    # A different config never resumes another run's state.
    run_train(common, kill_after="epoch   2/6")
    assert "resumed" not in run_train([*common, "trainer.label_smoothing=0.0"])
