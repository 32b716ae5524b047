"""`trainer=ddp`: the train stage launches itself under torchrun, 2 processes with gloo on CPU."""

from __future__ import annotations

import pytest

from conftest import copy_outputs

pytestmark = pytest.mark.slow


def test_two_processes_reach_the_single_process_accuracy(tiny_run, tmp_path, capfd):
    from maas import io, model_files
    from maas.config import compose
    from maas.registry import get

    base = copy_outputs(tiny_run[0], tmp_path, "trained", "reports")
    accuracy = {}
    for nproc in (1, 2):
        cfg = copy_outputs(base, tmp_path / f"n{nproc}", "trained", "reports")
        cfg.trainer = compose(["trainer=ddp", "trainer.device=cpu", "trainer.epochs=15"]).trainer
        cfg.trainer.nproc = nproc
        summary = get("train").run(cfg)
        get("evaluate").run(cfg)
        accuracy[nproc] = io.read_json(f"{cfg.paths.reports}/metrics.json")["test"]["accuracy"]
        assert model_files.read_spec(cfg.paths.trained)["training"]["processes"] == nproc
        assert summary.get("processes", 1) == nproc
    out = capfd.readouterr().out
    assert "launching 2 processes under torchrun" in out and "2 processes of 32 images a step" in out
    assert out.count("train: best epoch") == 2  # rank 1 trains but prints and writes nothing of its own
    assert accuracy[1] > 0.95 and abs(accuracy[2] - accuracy[1]) <= 0.01, accuracy
