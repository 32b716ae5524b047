"""DVC experiments for real: queue two with Hydra overrides (`dvc exp run --queue -S ...`),
run them two at a time (`dvc queue start -j 2`), and read both back with `dvc exp show`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import git_project, sh

pytestmark = pytest.mark.slow

# As small as a full pipeline gets: one epoch, no gate to miss, no compression to try.
TINY = ["trainer=fast", "trainer.epochs=1", "trainer.device=cpu", "gates=none", "compress=none"]
WIDTHS = [8, 16]  # model.channels, one experiment each


def wait_for_queue(project: Path, timeout: float) -> str:
    """`dvc queue status` once no experiment is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh(project, "dvc", "queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)  # each `dvc queue status` costs a second of CPU
    raise AssertionError(f"the queue did not finish within {timeout} s:\n{status}")


def experiments(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json`'s experiments by name: each one's data (params, metrics)."""
    return {run["name"]: run["data"]
            for rev in shown for exp in rev.get("experiments") or () for run in exp["revs"]}


def test_queued_experiments_run_in_parallel_and_show_their_params_and_metrics(tmp_path):
    project = git_project(tmp_path / "project")
    names = [f"channels-{w}" for w in WIDTHS]
    for name, width in zip(names, WIDTHS):
        sets = [arg for o in [*TINY, f"model.channels={width}"] for arg in ("-S", o)]
        # Up to evaluate: the params and metrics this test reads; compress and package add only time.
        sh(project, "dvc", "exp", "run", "--queue", "--name", name, *sets, "evaluate")
    assert sh(project, "git", "status", "--porcelain") == ""  # queueing leaves the workspace as it was
    try:
        sh(project, "dvc", "queue", "start", "-j", "2")
        status = wait_for_queue(project, timeout=900)
        failed = [n for n in names if not any(n in line and "Success" in line for line in status.splitlines())]
        assert not failed, status + "".join(sh(project, "dvc", "queue", "logs", n, check=False) for n in failed)
    finally:
        sh(project, "dvc", "queue", "stop", "--kill", check=False)

    shown = experiments(json.loads(sh(project, "dvc", "exp", "show", "--json")))
    assert sorted(shown) == sorted(names), shown.keys()
    for name, width in zip(names, WIDTHS):
        params = shown[name]["params"]["params.yaml"]["data"]
        metrics = shown[name]["metrics"]
        # DVC composed conf/ with the overrides into the experiment's params.yaml ...
        assert params["model"]["channels"] == width and params["trainer"]["epochs"] == 1
        assert params["gates"]["min_test_accuracy"] == 0.0 and params["compress"]["method"] == "none"
        # ... and the stages read it: one epoch trained, then evaluated on the 270 test images.
        assert metrics["reports/train/metrics.json"]["data"]["best_epoch"] == 1
        test = metrics["reports/metrics.json"]["data"]["test"]
        assert test["samples"] == 270 and 0.0 <= test["accuracy"] <= 1.0
