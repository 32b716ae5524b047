"""`dvc repro` for real, in a temp copy of the project: the default config end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import git_project, sh
from maas import io

pytestmark = pytest.mark.slow

STAGES = ["validate", "preprocess", "train", "evaluate", "compress", "package"]


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return git_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def first_repro(project) -> str:
    return sh(project, "dvc", "repro")


def test_repro_runs_all_six_stages_and_meets_the_quality_bar(project, first_repro):
    assert ran(first_repro) == STAGES
    metrics = io.read_json(project / "reports" / "metrics.json")
    assert metrics["test"]["accuracy"] >= 0.97, metrics
    info = io.read_json(project / "models" / "bento" / "bento.json")
    assert (project / "models" / "bento" / info["archive"]).exists()
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status")


def test_second_repro_runs_nothing(project, first_repro):
    out = sh(project, "dvc", "repro")
    assert ran(out) == [] and "Data and pipelines are up to date." in out


def test_a_param_change_reruns_only_what_reads_it(project, first_repro):
    sh(project, "maas", "compose", "evaluate.anomaly_noise_std=5.0")
    out = sh(project, "dvc", "repro")
    # evaluate reads it (for models that score anomalies; a cnn doesn't): its outputs come out identical,
    # so compress stays cached; package records every stage's config in the card and lineage, so it runs.
    assert ran(out) == ["evaluate", "package"], out
    sh(project, "maas", "compose")
    out = sh(project, "dvc", "repro")
    # back to what the first run read: both restored from the run cache, not run
    assert "Stage 'evaluate' is cached - skipping run" in out and "Stage 'package' is cached - skipping run" in out
    assert ran(out) == [], out


def test_revalidating_the_same_data_reruns_nothing_downstream(project, first_repro):
    """Data Docs carry timestamps and drift.json history, both outside what DVC hashes: the stages that read
    validate's result stay cached (package runs only because it records every key a stage reads)."""
    sh(project, "maas", "compose", "expectations.max_rows=2000000")  # validate reads it; the result is the same
    try:
        out = sh(project, "dvc", "repro")
        assert ran(out) == ["validate", "package"], out
        assert (project / "data" / "validated" / "data_docs" / "index.html").exists()
    finally:
        sh(project, "maas", "compose")
        sh(project, "dvc", "repro")


def test_push_then_pull_restores_data_and_outputs(project, first_repro):
    sh(project, "dvc", "push")
    raw_md5 = io.file_md5(project / "data" / "raw" / "digits.csv")
    for p in ("data/raw", "models", "reports", ".dvc/cache"):
        shutil.rmtree(project / p)
    sh(project, "dvc", "pull")
    assert io.file_md5(project / "data" / "raw" / "digits.csv") == raw_md5
    assert (project / "models" / "trained" / "weights.safetensors").exists()
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status")


def test_a_weaker_challenger_fails_the_champion_gate_and_keeps_the_last_bento(project, first_repro):
    bento = io.dir_sha256(project / "models" / "bento")
    champion = io.read_json(project / "models" / "bento" / "bento.json")
    theirs = champion["metrics"]["test"]["accuracy"]
    sh(project, "maas", "compose", "gates.min_test_accuracy=0.0", "trainer.epochs=1")  # only the champion gate can fail
    try:
        out = sh(project, "dvc", "repro", check=False)
        ours = io.read_json(project / "reports" / "metrics.json")["test"]["accuracy"]
        assert ours < theirs - 0.005
        assert (f"[maas] stage evaluate: FAILED: gates.champion: the challenger's test accuracy {ours:.4f} is "
                f"{100 * (theirs - ours):.2f} points below the packaged model's {theirs:.4f} "
                f"({champion['bento_tag']}); gates.champion.margin=0.005 allows 0.50") in out, out
        assert ran(out) == ["train", "evaluate"]
        assert io.dir_sha256(project / "models" / "bento") == bento  # `maas serve` serves the champion still
        gates = io.read_json(project / "reports" / "evaluation" / "gates.json")
        assert [(g["gate"], g["passed"]) for g in gates] == [("gates.min_test_accuracy", True)]
        challenge = io.read_json(project / "reports" / "evaluation" / "champion.json")  # history: not hashed by DVC
        assert challenge["passed"] is False and challenge["champion_bento"] == champion["bento_tag"]
    finally:
        sh(project, "maas", "compose")
