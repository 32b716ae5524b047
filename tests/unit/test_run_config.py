"""Which config a run uses: params.yaml, or a one-off written apart from the tracked outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_project
from maas import io
from maas.run_config import RUNS_ROOT, choose
from maas.registry import all_stages, get


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_no_overrides_or_the_same_values_run_params_yaml_on_the_tracked_paths(project):
    assert choose([get("train")], []).tracked
    assert choose([get("train")], ["model.channels=32"]).tracked  # what params.yaml already says
    assert choose([get("train")], ["orchestration.retries.delay_s=9"]).tracked  # no stage reads it


def test_a_changed_key_writes_the_stage_outputs_under_runs(project, capsys):
    chosen = choose([get("train")], ["model.channels=64"])
    assert not chosen.tracked and chosen.changed == ("model.channels",)
    assert chosen.out_dir.parent == Path(RUNS_ROOT)
    assert chosen.cfg.paths.trained == str(chosen.out_dir / "trained")
    assert chosen.cfg.paths.processed == "data/processed"  # its input stays the tracked one
    assert "one-off run" in capsys.readouterr().out
    # The next stage with the same overrides reads that one-off model, once it exists.
    (chosen.out_dir / "trained").mkdir(parents=True)
    assert choose([get("evaluate")], ["model.channels=64"]).cfg.paths.trained == str(chosen.out_dir / "trained")


def test_an_input_in_a_folder_the_stage_also_writes_is_copied_in(project):
    io.write_json(project / "reports" / "metrics.json", {"test": {"accuracy": 0.99}})
    chosen = choose([get("package")], ["serve.max_batch_size=8"])
    assert io.read_json(chosen.out_dir / "reports" / "metrics.json") == {"test": {"accuracy": 0.99}}
    # In a one-off pipeline, evaluate writes it first: nothing is copied.
    other = choose(all_stages(), ["serve.max_batch_size=9"])
    assert not (other.out_dir / "reports" / "metrics.json").exists()


def test_paths_in_the_overrides_say_where_and_replace_says_it_loudly(project, tmp_path, capsys):
    told = choose([get("train")], ["model.channels=64", f"paths.trained={tmp_path / 'mine'}"])
    assert not told.tracked and told.out_dir is None and told.cfg.paths.trained == str(tmp_path / "mine")
    replaced = choose([get("train")], ["model.channels=64"], replace=True)
    assert not replaced.tracked and replaced.cfg.paths.trained == "models/trained"
    assert "WARNING: replacing the DVC-tracked outputs of train" in capsys.readouterr().out
