"""Versioning a team can audit, in a temp git + DVC project on a tiny config: DVC's run cache, declared
code that covers what each stage imports, dvc.lock that reproduces, lineage, experiments promoted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import git_project, sh
from maas import io
from maas.code_deps import NOT_STAGE_CODE, RECORD_ENV, covered

pytestmark = pytest.mark.slow

TINY = ["trainer=fast", "trainer.device=cpu", "gates=none", "compress.latency.rounds=5"]
GIT = ["git", "-c", "user.name=maas-tests", "-c", "user.email=tests@maas.invalid"]
DOWNSTREAM = ["train", "evaluate", "compress", "package"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project whose tiny pipeline ran once (every stage process recording what it imported), committed."""
    project = git_project(tmp_path_factory.mktemp("versioned"))
    sh(project, "maas", "compose", *TINY)
    # Committed before the run, as a team works (commit, run, commit dvc.lock): the Bento's lineage then
    # names a commit that holds its inputs, and a clone of it rebuilds the very same Bento.
    sh(project, *GIT, "commit", "-qam", "tiny config")
    imports = project.parent / "imports.jsonl"
    sh(project, "dvc", "repro", env={**os.environ, RECORD_ENV: str(imports)})
    sh(project, "git", "add", "-A")
    sh(project, *GIT, "commit", "-qm", "tiny pipeline: dvc.lock")
    return project


def dvc_yaml(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.yaml").read_text())


def test_every_stage_declares_the_code_it_imports(project):
    deps = {name: s["deps"] for name, s in dvc_yaml(project)["stages"].items()}
    assert "src/maas/stages/preprocess.py" in deps["train"]  # train reads the splits through load_split
    records = [json.loads(line) for line in (project.parent / "imports.jsonl").read_text().splitlines()]
    assert sorted(r["stage"] for r in records) == sorted(deps)
    for r in records:
        undeclared = [f for f in r["files"] if f not in NOT_STAGE_CODE and not covered(f, deps[r["stage"]])]
        assert undeclared == [], f"stage {r['stage']} imported code dvc.yaml doesn't declare: {undeclared}"


def test_reverting_a_parameter_restores_from_the_run_cache(project):
    sh(project, "maas", "compose", *TINY, "trainer.epochs=1")
    out = sh(project, "dvc", "repro")
    assert all(f"Running stage '{s}'" in out for s in DOWNSTREAM), out
    sh(project, "git", "checkout", "params.yaml")
    out = sh(project, "dvc", "repro")
    for stage in DOWNSTREAM:  # restored, not run
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in out, out
    assert "Running stage" not in out
    assert sh(project, "git", "status", "--porcelain", "dvc.lock", "params.yaml") == ""  # the committed record


def test_a_rebuild_in_an_empty_bentoml_store_reproduces_dvc_lock(project, tmp_path):
    """The same model and code give the same Bento, byte for byte; validate's Data Docs and drift record
    (which differ every run) stay out of what DVC hashes."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    for stage in ("validate", "package"):
        out = sh(project, "dvc", "repro", "--force", "--single-item", stage, env=env)
        assert f"Running stage '{stage}'" in out
    assert sh(project, "git", "status", "--porcelain", "dvc.lock") == ""
    assert (project / "data" / "validated" / "data_docs" / "index.html").exists()
    # dvc.lock, its metrics and plots all load at HEAD: `dvc metrics diff` has its baseline
    assert "failed to load" not in sh(project, "dvc", "metrics", "diff", "HEAD")


def test_lineage_says_where_the_bento_came_from_and_what_differs_now(project):
    out = sh(project, "maas", "lineage")
    inputs = sh(project, "git", "log", "-1", "--format=%H", "--", "params.yaml").strip()  # not dvc.lock's commit
    assert f"label git_commit: {inputs}" in out and "label git_dirty: false" in out
    assert "the workspace matches this Bento" in out and out.count(": same (") == 4, out
    stage_file = project / "src" / "maas" / "stages" / "train.py"
    code = stage_file.read_text()
    sh(project, "maas", "compose", *TINY, "trainer.epochs=5")
    stage_file.write_text(code + "\n# an edit\n")
    try:
        out = sh(project, "maas", "lineage", check=False)
        assert "config: DIFFERS" in out and "trainer.epochs: 2 -> 5" in out, out
        assert "code: DIFFERS" in out and "uncommitted changes now: params.yaml, src/maas/stages/train.py" in out
        assert "data: same" in out
        # dvc.lock records what made the Bento; the workspace no longer matches it (nothing re-ran yet)
        assert "dvc.lock: DIFFERS" in out and "stage train: not run since: changed deps: " in out
        assert "the workspace differs from this Bento" in out
    finally:
        stage_file.write_text(code)
        sh(project, "git", "checkout", "params.yaml")


def test_a_failing_stage_gets_back_the_outputs_dvc_deleted(project):
    trained = io.dir_sha256(project / "models" / "trained")
    sh(project, "maas", "compose", *TINY, "trainer.optimizer.lr=1e9")  # diverges: no finite validation loss
    try:
        out = sh(project, "dvc", "repro", check=False)
        assert "[maas] stage train: FAILED" in out and "lower trainer.optimizer.lr" in out, out
        assert "put its last good outputs back from DVC's cache: models/trained, reports/train" in out
        assert io.dir_sha256(project / "models" / "trained") == trained
    finally:
        sh(project, "git", "checkout", "params.yaml")
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status")


def test_paths_in_params_yaml_that_dvc_yaml_does_not_track_are_refused(project):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("trained: models/trained", "trained: models/elsewhere"))
    try:
        out = sh(project, "maas", "stage", "train", "--params", "params.yaml", check=False)
        assert "dvc.yaml's outs of stage train are not what params.yaml and the code say" in out, out
        assert "missing: ['models/elsewhere']" in out and "run `maas dvc-yaml`" in out
        assert not (project / "models" / "elsewhere").exists()
    finally:
        (project / "params.yaml").write_text(params)


def test_an_experiment_is_shown_applied_and_branched(project):
    assert dvc_yaml(project)["artifacts"]["maas-digits"] == {
        "path": "models/bento/maas-digits.bento", "type": "model",
        "desc": "BentoML bundle serving the digits model (import: `maas serve` or `bentoml import`)",
        "labels": ["maas", "bento", "digits"]}
    # epochs=1: what the run-cache test ran, so DVC restores it from the run cache when that test ran first
    sets = [arg for o in [*TINY, "trainer.epochs=1"] for arg in ("-S", o)]
    sh(project, "dvc", "exp", "run", "--name", "one-epoch", *sets, "evaluate")
    shown = {run["name"]: run["data"] for rev in json.loads(sh(project, "dvc", "exp", "show", "--json"))
             for exp in rev.get("experiments") or () for run in exp["revs"]}
    exp = shown["one-epoch"]
    assert exp["params"]["params.yaml"]["data"]["trainer"]["epochs"] == 1
    accuracy = exp["metrics"]["reports/metrics.json"]["data"]["test"]["accuracy"]
    sh(project, "dvc", "exp", "branch", "one-epoch", "promoted")
    assert "epochs: 1" in sh(project, "git", "show", "promoted:params.yaml")
    assert "evaluate:" in sh(project, "git", "show", "promoted:dvc.lock")
    sh(project, "git", "checkout", "-q", "--", ".")
    sh(project, "dvc", "exp", "apply", "one-epoch")
    assert yaml.safe_load((project / "params.yaml").read_text())["trainer"]["epochs"] == 1
    assert io.read_json(project / "reports" / "metrics.json")["test"]["accuracy"] == accuracy
