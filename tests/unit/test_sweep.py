"""Sweeps: Hydra's multirun (basic sweeper, Optuna, joblib), the Dask flow, promote.

Every trial trains 1 epoch of trainer=fast on the tiny run's processed data.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import ROOT, copy_outputs, make_project
from maas import io
from maas.errors import ConfigError
from maas.registry import get
from maas.sweep import expand_overrides, multirun


@pytest.fixture
def trial_args(tiny_run, tmp_path) -> list[str]:
    """Fixed overrides of a tiny trial: the tiny run's processed data, outputs never the pipeline's."""
    cfg = copy_outputs(tiny_run[0], tmp_path, "processed")
    return ["trainer=fast", "trainer.epochs=1", "trainer.device=cpu", f"paths.processed={cfg.paths.processed}",
            f"paths.trained={tmp_path / 'pipeline' / 'trained'}", f"paths.reports={tmp_path / 'pipeline' / 'reports'}"]


def test_expand_is_the_cartesian_product():
    trials = expand_overrides(["model.channels=16,32", "trainer.epochs=1,2,3", "seed=5"])
    assert len(trials) == 6
    assert ["model.channels=32", "trainer.epochs=3", "seed=5"] in trials


def test_bad_sweep_override_is_named():
    with pytest.raises(ConfigError, match="model.channels=16,,"):
        expand_overrides(["model.channels=16,,"])


def test_hparams_search_config_declares_the_sweep():
    trials = expand_overrides(["hparams_search=cnn_width"])
    assert sorted(t[-1] for t in trials) == ["model.channels=16", "model.channels=32", "model.channels=64"]
    # A command-line value for the same key replaces the declared one.
    assert len(expand_overrides(["hparams_search=cnn_width", "model.channels=8"])) == 1


def test_an_optuna_search_cannot_fan_out_up_front():
    with pytest.raises(ConfigError, match="maas stage train -m hparams_search=optuna"):
        expand_overrides(["hparams_search=optuna"])


@pytest.mark.parametrize("overrides, named", [
    (["model.chanels=1,2"], "did you mean model.channels"),
    (["model=mlp", "model.channels=8,16"], "sweep key model.channels is not in the config"),
    (["hparams_search=optuna", "model=mlp"], "sweep key model.channels"),  # the search space is the CNN's
    (["trainer.epochs=abc", "seed=1,2"], "trainer.epochs"),
])
def test_a_sweep_that_cannot_work_is_refused_before_any_trial(overrides, named, tmp_path):
    with pytest.raises(ConfigError, match=named):
        multirun(get("train"), overrides, sweep_dir=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_hydra_groups_and_settings_pass_the_key_check(tmp_path):
    from maas.sweep import check_sweep

    check_sweep(get("train"), ["hydra/launcher=joblib", "hydra/sweeper=optuna", "hparams_search=optuna",
                               "hydra.sweeper.n_trials=2"])


def test_a_stage_that_reads_its_output_folder_cannot_be_swept(tmp_path):
    with pytest.raises(ConfigError, match="stage package reads and writes paths.reports"):
        multirun(get("package"), ["serve.max_batch_size=1,2"], sweep_dir=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_basic_sweep_records_each_trial_and_a_failed_one_does_not_stop_it(trial_args, tmp_path):
    pipeline_model = Path(trial_args[-2].split("=", 1)[1])
    # lr=-1 fails its trials' config check; the two others train.
    results = multirun(get("train"), [*trial_args, "model.channels=4,8", "trainer.optimizer.lr=0.003,-1"],
                       sweep_dir=tmp_path / "sweep")
    trials = {t["number"]: t for t in results["trials"]}
    assert [trials[n]["status"] for n in range(4)] == ["ok", "failed", "ok", "failed"]
    assert "trainer.optimizer.lr=-1 must be a number > 0" in trials[1]["error"]
    assert [f["number"] for f in results["failed"]] == [1, 3]
    best = results["best"]
    assert best["number"] == min((0, 2), key=lambda n: trials[n]["objective"])
    assert "model.channels=" in " ".join(best["overrides"])
    for n in (0, 2):  # each trial's outputs in its own folder, with Hydra's record of it
        folder = tmp_path / "sweep" / str(n)
        record = io.read_json(folder / "trial.json")
        assert record["summary"]["best_val_loss"] == record["objective"] > 0
        assert (folder / "trained" / "weights.safetensors").exists() and (folder / ".hydra" / "overrides.yaml").exists()
    assert not pipeline_model.exists()  # the pipeline's output path is untouched
    assert io.read_json(tmp_path / "sweep" / "results.json") == results
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert f"Best: trial {best['number']}" in table and "must be a number > 0" in table


def test_optuna_search_names_its_best_trial(trial_args, tmp_path):
    from omegaconf import OmegaConf

    results = multirun(get("train"), ["hparams_search=optuna", "hydra.sweeper.n_trials=3", *trial_args],
                       sweep_dir=tmp_path / "sweep")
    assert len(results["trials"]) == 3 and not results["failed"]
    declared = OmegaConf.load(ROOT / "conf" / "hparams_search" / "optuna.yaml").hydra.sweeper.params
    best = results["best"]
    assert {o.split("=")[0] for o in best["overrides"]} >= set(declared)  # the search space's keys
    assert best["objective"] == min(t["objective"] for t in results["trials"])
    optuna = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")  # the sweeper's own summary
    assert math.isclose(optuna.best_value, best["objective"])


def test_joblib_launcher_runs_trials_in_parallel_processes(trial_args, tmp_path):
    results = multirun(get("train"), ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *trial_args,
                                      "model.channels=4,8"], sweep_dir=tmp_path / "sweep")
    assert [t["status"] for t in results["trials"]] == ["ok", "ok"]
    from maas.trials import cores

    for n in (0, 1):  # two at once: each gets half the cores, not all of them
        assert io.read_json(tmp_path / "sweep" / str(n) / "trial.json")["torch_threads"] == max(1, cores() // 2)


def test_promote_writes_the_best_trial_into_conf(tmp_path, monkeypatch, capsys):
    from maas.cli import main
    from maas.config import compose

    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    sweep = project / "sweeps" / "train" / "2026-01-01_00-00-00"
    io.write_json(sweep / "results.json", {
        "stage": "train", "objective": "best_val_loss (lower is better)", "sweep_dir": str(sweep),
        "best": {"number": 1, "objective": 0.1, "dir": str(sweep / "1"),
                 "overrides": ["model=mlp", "model.dropout=0.3", "trainer.optimizer.lr=0.001", "hparams_search=optuna",
                               "paths.processed=/elsewhere", "hydra.sweeper.n_trials=3"]}})
    assert main(["sweep", "promote"]) == 0  # the newest sweep
    out = capsys.readouterr().out
    assert "conf/promoted/best.yaml" in out and "make run" in out and "paths.processed" not in out
    cfg = compose()
    assert cfg.model.arch == "mlp" and cfg.model.dropout == 0.3 and cfg.trainer.optimizer.lr == 0.001
    assert cfg.paths.processed == "data/processed"
    assert compose(["model.dropout=0.1"]).model.dropout == 0.1  # the command line still wins
    assert "trial 1" in (project / "conf" / "promoted" / "best.yaml").read_text()


def test_promote_refuses_a_sweep_without_a_finished_trial(tmp_path, monkeypatch, capsys):
    from maas.cli import main

    monkeypatch.chdir(make_project(tmp_path / "project"))
    assert main(["sweep", "promote"]) == 2
    assert "run a sweep first" in capsys.readouterr().err
    io.write_json(tmp_path / "s" / "results.json", {"best": None})
    assert main(["sweep", "promote", str(tmp_path / "s")]) == 2
    assert "nothing to promote" in capsys.readouterr().err
    assert not (tmp_path / "project" / "conf" / "promoted").exists()


@pytest.mark.slow
def test_dask_flow_runs_trials_on_a_local_cluster_and_skips_finished_ones(trial_args, tmp_path, prefect_server):
    import os
    import subprocess
    import sys

    def run() -> dict:  # as the deployment's users do, against the session's Prefect server
        argv = [sys.executable, str(ROOT / "flows" / "sweep.py"), "--sweep-dir", str(tmp_path / "sweep"),
                *trial_args, "trainer.optimizer.lr=0.003,-1"]
        done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PREFECT_API_URL": prefect_server},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return io.read_json(tmp_path / "sweep" / "results.json")

    results = run()
    assert [t["status"] for t in results["trials"]] == ["ok", "failed"]  # lr=-1 fails; the other trial finishes
    assert results["best"]["number"] == 0 and "must be a number > 0" in results["failed"][0]["error"]
    record = tmp_path / "sweep" / "0" / "trial.json"
    assert io.read_json(record)["torch_threads"] >= 1  # a LocalCluster worker's share of the cores
    before = record.stat().st_mtime_ns
    again = run()  # the finished trial is not trained again; the failed one runs (and fails) again
    assert record.stat().st_mtime_ns == before and again["best"] == results["best"]
