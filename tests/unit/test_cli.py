"""The `maas` command: overrides after flags, errors as one line with exit code 2."""

from __future__ import annotations

from conftest import copy_outputs, make_project, tiny_overrides
from maas import io
from maas.cli import main
from maas.params_file import load_params


def test_compose_takes_overrides_after_flags(tmp_path):
    out = tmp_path / "params.yaml"
    assert main(["compose", "--out", str(out), "seed=3", "model=mlp"]) == 0
    cfg = load_params(out)
    assert cfg.seed == 3 and cfg.model.arch == "mlp"


def test_sweep_flag_then_overrides_runs_each_trial(tiny_run, tmp_path, monkeypatch, capsys):
    cfg = copy_outputs(tiny_run[0], tmp_path, "processed")
    monkeypatch.chdir(make_project(tmp_path / "project") / "conf")  # sweeps/ lands at its root
    overrides = [o for o in tiny_overrides(tmp_path, tmp_path) if not o.startswith("paths.processed")]
    assert main(["stage", "train", "-m", *overrides, "trainer.epochs=1", "model.channels=4,8",
                 f"paths.processed={cfg.paths.processed}"]) == 0
    (table,) = (tmp_path / "project" / "sweeps" / "train").glob("*/results.json")  # one folder per sweep run
    results = io.read_json(table)
    assert [t["overrides"][-2] for t in results["trials"]] == ["model.channels=4", "model.channels=8"]


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["stage", "deploy"]) == 2
    assert "no stage named 'deploy'" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert main(["stage", "train", "--params", str(tmp_path / "params.yaml"), "seed=2"]) == 2
    assert "pass overrides to `maas compose`" in capsys.readouterr().err


def test_unknown_flag_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["stage", "train", "-m", "--bogus"])
    assert e.value.code == 2 and "--bogus" in capsys.readouterr().err


def test_sweep_cannot_read_params(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert main(["stage", "train", "-m", "--params", str(tmp_path / "params.yaml")]) == 2
    assert "can't read --params" in capsys.readouterr().err


def test_serve_names_a_broken_bento_record(tmp_path, capsys):
    from maas.config import compose
    from maas.params_file import write_params

    params = tmp_path / "params.yaml"
    write_params(compose([f"paths.bento={tmp_path / 'bento'}"]), params)
    assert main(["serve", "--params", str(params)]) == 2
    assert "make run" in capsys.readouterr().err
    io.write_json(tmp_path / "bento" / "bento.json", {"bento_tag": "maas-digits:nope"})
    assert main(["serve", "--params", str(params)]) == 2
    assert "lacks bento_tag/archive" in capsys.readouterr().err
    io.write_json(tmp_path / "bento" / "bento.json", {"bento_tag": "maas-digits:nope", "archive": "x.bento"})
    assert main(["serve", "--params", str(params)]) == 2
    assert "Bento archive" in capsys.readouterr().err


def test_malformed_params_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    assert main(["stage", "train", "--params", str(tmp_path / "params.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_deploy_without_a_server_says_how_to_start_one():
    import os
    import subprocess

    from conftest import BIN, ROOT, free_port

    def deploy(**env: str) -> subprocess.CompletedProcess:
        # A process of its own: Prefect reads its settings once per process.
        clean = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        return subprocess.run([str(BIN / "maas"), "deploy"], cwd=ROOT, env={**clean, **env},
                              capture_output=True, text=True, timeout=120)

    unset = deploy()
    assert unset.returncode == 2 and "PREFECT_API_URL is not set" in unset.stderr, unset.stderr
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    down = deploy(PREFECT_API_URL=url)
    assert down.returncode == 2, down.stderr
    assert f"no Prefect server answers at PREFECT_API_URL={url}" in down.stderr and "prefect server start" in down.stderr
