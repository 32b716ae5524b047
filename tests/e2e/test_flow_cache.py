"""The Prefect flow and `dvc repro` keep one record, dvc.lock: neither redoes what the other did,
and a one-off config never touches the tracked outputs. In a fresh git + DVC copy of the project."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from conftest import git_project, sh
from maas import io
from maas.model_files import read_spec

pytestmark = pytest.mark.slow

STAGES = ["validate", "preprocess", "train", "evaluate", "compress", "package"]
TINY = ["trainer=fast", "trainer.device=cpu", "gates=none", "compress=int8_weights", "compress.latency.rounds=5"]
CLEAN = "Data and pipelines are up to date"


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server) -> Path:
    dest = git_project(tmp_path_factory.mktemp("flow-cache"))
    sh(dest, "maas", "compose", *TINY)
    return dest


def flow(project: Path, api: str, *overrides: str) -> dict[str, str]:
    """Run flows/pipeline.py in the copy; return each task run's final state name, by stage."""
    out = sh(project, sys.executable, "flows/pipeline.py", *overrides, env={**os.environ, "PREFECT_API_URL": api})
    # The newest run started here (deployments' scheduled runs, from other tests, have not started).
    run = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"deployment_id": {"is_null_": True}},
                                                      "sort": "START_TIME_DESC", "limit": 1}).json()[0]
    assert run["state_type"] == "COMPLETED", out[-3000:]
    tasks = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    states = {t["name"].rsplit("-", 1)[0]: t["state_name"] for t in tasks}
    ran = [s for s in STAGES if f"[maas] stage {s}: start" in out]
    assert ran == [s for s in STAGES if states.get(s) == "Completed"], out[-3000:]  # Cached means not run
    return states


def ran(states: dict[str, str]) -> list[str]:
    return [s for s in STAGES if states[s] != "Cached"]


def test_a_rerun_with_nothing_changed_runs_no_stage(project, prefect_server):
    assert ran(flow(project, prefect_server)) == STAGES
    assert CLEAN in sh(project, "dvc", "status")  # the flow recorded what it produced, as dvc repro would
    states = flow(project, prefect_server)
    assert set(states.values()) == {"Cached"} and sorted(states) == sorted(STAGES)
    assert CLEAN in sh(project, "dvc", "status")


def test_one_changed_parameter_reruns_what_reads_it_and_what_follows(project, prefect_server):
    sh(project, "maas", "compose", *TINY, "model.channels=8")
    assert ran(flow(project, prefect_server)) == ["train", "evaluate", "compress", "package"]
    assert read_spec(project / "models" / "trained")["model"]["channels"] == 8
    assert CLEAN in sh(project, "dvc", "status")


def test_after_dvc_repro_the_flow_has_nothing_to_do(project, prefect_server):
    sh(project, "maas", "compose", *TINY, "model.channels=8", "compress=none")
    repro = sh(project, "dvc", "repro")
    assert "Running stage 'compress'" in repro and "Running stage 'train'" not in repro
    assert set(flow(project, prefect_server).values()) == {"Cached"}


def test_maas_stage_uses_params_yaml_and_a_one_off_config_writes_apart(project, prefect_server):
    tracked = io.dir_sha256(project / "models" / "trained")
    out = sh(project, "maas", "stage", "train")  # params.yaml's config, already recorded: nothing to do
    assert "train: up to date with dvc.lock, skipped" in out and "stage train: start" not in out
    out = sh(project, "maas", "stage", "train", *TINY, "model.channels=4")
    assert "one-off run" in out and "model.channels" in out
    one_off = next((project / "runs").glob("*/trained"))
    assert read_spec(one_off)["model"]["channels"] == 4
    # The same overrides on the next stage evaluate that model, still apart from the tracked outputs.
    sh(project, "maas", "stage", "evaluate", *TINY, "model.channels=4")
    assert (one_off.parent / "reports" / "metrics.json").exists()
    assert io.dir_sha256(project / "models" / "trained") == tracked
    assert CLEAN in sh(project, "dvc", "status")
    # --replace writes over the tracked model and says so; dvc status then reports it.
    out = sh(project, "maas", "stage", "train", *TINY, "model.channels=4", "--replace")
    assert "WARNING: replacing the DVC-tracked outputs of train" in out
    assert "models/trained" in sh(project, "dvc", "status")
    out = sh(project, "maas", "stage", "train")  # back to params.yaml's config: it runs, then records
    assert "stage train: start" in out
    assert read_spec(project / "models" / "trained")["model"]["channels"] == 8
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status", "train")  # and recorded
