"""conf/ is the source of truth: params.yaml and dvc.yaml must be exactly what it produces."""

from __future__ import annotations

import re

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT
from maas.config import compose
from maas.params_file import load_params, to_params_text, write_params
from maas.dvcfile import render
from maas.errors import ConfigError
from maas.stages import expand
from maas.registry import all_stages, get


def test_params_yaml_matches_conf():
    committed = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert committed == to_params_text(compose()), "params.yaml drifted from conf/: run `make dvc-files`"


def test_dvc_yaml_matches_stage_registry():
    committed = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert committed == render(compose()), "dvc.yaml drifted from the stage registry: run `make dvc-files`"


def test_prefect_yaml_matches_conf():
    from maas import prefectfile

    committed = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    assert committed == prefectfile.render(compose()), "prefect.yaml drifted from conf/: run `make dvc-files`"


def test_prefect_yaml_schedules_the_nightly_run_as_conf_says_and_names_real_flows():
    import yaml

    orch = compose().orchestration
    deployments = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert sorted(deployments) == ["maas-monitor", "maas-nightly", "maas-sweep"]
    assert deployments["maas-nightly"]["schedules"] == [
        {"cron": orch.schedule.cron, "timezone": orch.schedule.timezone, "active": True}]
    assert deployments["maas-monitor"]["schedules"] == [
        {"cron": orch.monitor_schedule.cron, "timezone": orch.monitor_schedule.timezone, "active": True}]
    for d in deployments.values():
        assert d["work_pool"] == {"name": orch.work_pool}
        path, name = d["entrypoint"].split(":")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{d['entrypoint']} names no flow function"


def test_dvc_yaml_lists_the_six_stages_in_order():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["validate", "preprocess", "train", "evaluate", "compress", "package"]
    assert all(s["cmd"] == f"maas stage {name} --params params.yaml" for name, s in stages.items())


def test_registry_declares_real_params_and_code():
    cfg = compose()
    for stage in all_stages():
        for key in stage.params:
            assert OmegaConf.select(cfg, key) is not None, f"{stage.name}: param {key} is not in conf/"
        for path in stage.code:
            assert (ROOT / path).exists(), f"{stage.name}: code dep {path} does not exist"
        assert stage.outs, f"{stage.name} declares no outputs"


def test_overrides_and_groups_compose():
    cfg = compose(["experiment=small_cnn"])
    assert cfg.model.channels == 16 and cfg.trainer.epochs == 30
    # The command line wins over an experiment, as in Hydra.
    assert compose(["experiment=small_cnn", "trainer.epochs=3"]).trainer.epochs == 3
    assert compose(["model=mlp"]).model.arch == "mlp"
    cfg = compose(["model.channels=64", "seed=7"])
    assert cfg.model.channels == 64 and cfg.seed == 7
    assert cfg.model.num_classes == cfg.data.num_classes  # interpolations are resolved


@pytest.mark.parametrize("override, named", [
    ("trainer.epochz=3", "epochz"),
    ("model=resnet", "resnet"),
    ("trainer.epochs", "trainer.epochs"),
])
def test_bad_override_names_the_problem(override, named):
    with pytest.raises(ConfigError, match=named):
        compose([override])


def test_unknown_stage_lists_the_real_ones():
    with pytest.raises(ConfigError, match="validate, preprocess, train"):
        get("deploy")


def test_expand_fails_on_missing_key():
    with pytest.raises(ConfigError, match="paths.nowhere"):
        expand("{paths.nowhere}/x", compose())


def test_write_params_only_when_changed(tmp_path):
    path = tmp_path / "params.yaml"
    assert write_params(compose(), path) is True
    mtime = path.stat().st_mtime_ns
    assert write_params(compose(), path) is False
    assert path.stat().st_mtime_ns == mtime
    assert write_params(compose(["seed=1"]), path) is True
    assert load_params(path).seed == 1


def test_load_params_rejects_missing_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="maas compose"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(tmp_path / "list.yaml")


@pytest.mark.parametrize("override, named", [
    ("+trainer.epoch=5", r"unknown config key trainer.epoch in override '\+trainer.epoch=5'.*did you mean trainer.epochs"),
    ("trainer.epoch=5", "did you mean trainer.epochs"),  # Hydra's own hint would say to add it with +
    ("++model.chanels=64", "did you mean model.channels"),
    ("+serve.max_batchsize=8", "did you mean serve.max_batch_size"),
    ("+colour=red", "unknown config key colour"),
])
def test_a_key_nothing_reads_is_refused_with_the_closest_known_one(override, named):
    with pytest.raises(ConfigError, match=named):
        compose([override])


def test_keys_declared_by_any_option_in_conf_are_accepted():
    assert compose(["trainer.optimizer.betas=[0.8,0.9]"]).trainer.optimizer.betas == [0.8, 0.9]
    assert compose(["trainer/optimizer=sgd", "trainer.optimizer.momentum=0.5"]).trainer.optimizer.momentum == 0.5
    assert compose(["model=mlp", "model.hidden=[32]"]).model.hidden == [32]
    assert compose(["experiment=small_cnn", "~trainer.augment_shift"]).model.channels == 16


def test_a_hand_edited_params_yaml_with_a_typo_is_refused(tmp_path):
    """`dvc exp run -S +trainer.epoch=5` or an edit writes params.yaml directly; the stages read it."""
    cfg = compose()
    OmegaConf.update(cfg, "trainer.epoch", 5, force_add=True)
    write_params(cfg, tmp_path / "params.yaml")
    with pytest.raises(ConfigError, match=r"trainer.epoch in .*params.yaml.*did you mean trainer.epochs"):
        load_params(tmp_path / "params.yaml")


def test_commands_find_the_project_root_from_a_subfolder(tmp_path, monkeypatch, capsys):
    from conftest import make_project
    from maas.cli import main

    project = make_project(tmp_path / "project")
    (project / "params.yaml").unlink()
    (project / "sub" / "dir").mkdir(parents=True)
    monkeypatch.chdir(project / "sub" / "dir")
    assert main(["compose", "seed=5"]) == 0
    assert load_params(project / "params.yaml").seed == 5
    assert not (project / "sub" / "dir" / "params.yaml").exists()
    # A file named on the command line stays where the user typed it.
    monkeypatch.chdir(project / "sub" / "dir")  # main() moved this process to the root
    assert main(["compose", "--out", "here.yaml"]) == 0
    assert (project / "sub" / "dir" / "here.yaml").exists()


def test_outside_a_project_commands_refuse_and_say_where_to_run(tmp_path, monkeypatch, capsys):
    from maas.cli import main

    (tmp_path / "conf").mkdir()  # a conf/ alone is not a maas project
    monkeypatch.chdir(tmp_path)
    assert main(["compose"]) == 2
    err = capsys.readouterr().err
    assert "no maas project at or above" in err and "conf/config.yaml and dvc.yaml" in err
    assert not (tmp_path / "params.yaml").exists()


@pytest.mark.parametrize("override, named", [
    ("trainer.epochs=abc", "trainer.epochs='abc' must be an integer >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("trainer.nproc=0", "trainer.nproc=0 must be an integer >= 1"),
    ("trainer.optimizer.lr=-1", "trainer.optimizer.lr=-1 must be a number > 0"),
    ("trainer.precision=8", "trainer.precision=8"),
    ("trainer.backend=jax", "trainer.backend='jax'"),
    ("data.split.val_fraction=2", "data.split.val_fraction=2"),
    ("serve.max_batch_size=-5", "serve.max_batch_size=-5 must be an integer >= 1"),
    ("compress.method=int4", "compress.method='int4'"),
    ("gates.min_test_accuracy=97", "gates.min_test_accuracy=97"),
    ("orchestration.retries.attempts.validate=-1", "orchestration.retries.attempts.validate=-1 must be a number in [0, 50]"),
    ("orchestration.retries.delay_s=soon", "orchestration.retries.delay_s='soon'"),
])
def test_compose_refuses_bad_values_before_anything_runs(override, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        compose([override])


def test_a_misplaced_key_suggests_where_it_lives():
    with pytest.raises(ConfigError, match=r"trainer.lr .*did you mean trainer.optimizer.lr\?"):
        compose(["trainer.lr=0.1"])


def test_pipeline_refuses_a_bad_override_before_starting_prefect(capsys):
    from maas.cli import main

    assert main(["pipeline", "trainer.epoch=5"]) == 2
    err = capsys.readouterr().err
    assert "did you mean trainer.epochs" in err and "prefect" not in err.lower()


def test_dvc_composes_conf_with_maas_resolvers(tmp_path):
    """`dvc exp run -S ...` composes conf/ with Hydra itself, in its own process: the derived values
    (an MLP's input size from a table's columns) must resolve there as in `maas compose`."""
    import subprocess
    import sys

    script = ("import sys; from dvc.utils.hydra import compose_and_dump; "
              "compose_and_dump(sys.argv[1], sys.argv[2], None, 'config', sys.argv[3], ['data=wine'])")
    out = tmp_path / "params.yaml"
    subprocess.run([sys.executable, "-c", script, str(out), str(ROOT / "conf"), str(ROOT)], check=True,
                   cwd=tmp_path, capture_output=True)
    composed = yaml.safe_load(out.read_text())
    assert composed["model"]["in_features"] == 13 and composed["data"]["input_shape"] == [1, 1, 13]
