"""Sweeps: Hydra's basic-sweeper expansion, trials written apart from the pipeline's outputs."""

from __future__ import annotations

from pathlib import Path

from conftest import copy_outputs
from maas import io
from maas.stages import get
from maas.sweep import expand_overrides, run_sweep


def test_expand_is_the_cartesian_product():
    trials = expand_overrides(["model.channels=16,32", "trainer.epochs=1,2,3", "seed=5"])
    assert len(trials) == 6
    assert ["model.channels=32", "trainer.epochs=3", "seed=5"] in trials


def test_bad_sweep_override_is_named():
    import pytest

    from maas.errors import ConfigError

    with pytest.raises(ConfigError, match="model.channels=16,,"):
        expand_overrides(["model.channels=16,,"])


def test_hparams_search_config_declares_the_sweep():
    trials = expand_overrides(["hparams_search=cnn_width"])
    assert sorted(t[-1] for t in trials) == ["model.channels=16", "model.channels=32", "model.channels=64"]
    # A command-line value for the same key replaces the declared one.
    assert len(expand_overrides(["hparams_search=cnn_width", "model.channels=8"])) == 1


def test_sweep_trains_each_trial_apart(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "processed")
    pipeline_model = Path(tiny_run[0].paths.trained)
    before = io.dir_sha256(pipeline_model)
    overrides = ["trainer=fast", "trainer.epochs=1", "model.channels=4,8", f"paths.processed={cfg.paths.processed}",
                 f"paths.trained={pipeline_model}", f"paths.reports={tmp_path / 'reports'}"]
    results = run_sweep(get("train"), overrides, root=tmp_path / "sweeps")
    assert [r["trial"] for r in results] == [0, 1]
    from maas.model_files import read_spec

    widths = [read_spec(Path(r["dir"]) / "trained")["model"]["channels"] for r in results]
    assert widths == [4, 8]
    assert io.read_json(tmp_path / "sweeps" / "train" / "results.json")[1]["best_epoch"] == 1
    assert io.dir_sha256(pipeline_model) == before  # the pipeline's model is not touched


def test_a_stage_that_reads_its_output_folder_cannot_be_swept(tmp_path):
    import pytest

    from maas.errors import ConfigError

    with pytest.raises(ConfigError, match="stage package reads and writes paths.reports"):
        run_sweep(get("package"), ["serve.max_batch_size=1,2"], root=tmp_path)
    assert not (tmp_path / "package").exists()
