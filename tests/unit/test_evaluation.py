"""The evaluation report (metrics, calibration, report files) and the gates, champion/challenger included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, copy_outputs
from maas import io
from maas.errors import ConfigError, GateFailed
from maas.evaluation import calibration
from maas.registry import get


def paths(cfg) -> dict[str, Path]:
    return {k: Path(v) for k, v in cfg.paths.items()}


def test_ece_by_hand():
    # Two rows 90% sure, one right and one wrong: accuracy 0.5 at confidence 0.9 -> gap 0.4 over all rows.
    proba = np.array([[0.9, 0.1], [0.9, 0.1]])
    cal = calibration(np.array([0, 1]), proba, bins=10)
    assert cal["ece"] == pytest.approx(0.4)
    assert cal["table"] == [{"bin": 8, "low": 0.8, "high": 0.9, "count": 2, "confidence": 0.9, "accuracy": 0.5}]
    # Confident and right on every row: no gap at all; a 0.55 / 0.95 mix lands in two bins.
    assert calibration(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))["ece"] == 0.0
    mixed = calibration(np.array([0, 0]), np.array([[0.55, 0.45], [0.95, 0.05]]), bins=10)
    assert [b["bin"] for b in mixed["table"]] == [5, 9]
    assert mixed["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_evaluate_writes_the_report_dvc_plots_and_metrics(tiny_run):
    cfg, summaries = tiny_run
    reports = paths(cfg)["reports"]
    metrics = io.read_json(reports / "metrics.json")
    test = metrics["test"]
    assert test["samples"] == 270 and test["accuracy"] == summaries["evaluate"]["accuracy"]
    table = io.read_json(reports / "evaluation" / "evaluation.json")
    matrix = np.array(table["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 270
    assert np.isclose(np.trace(matrix) / 270, test["accuracy"])
    # The per-row CSV DVC's confusion template reads is the same matrix.
    with open(reports / "evaluation" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    again = np.zeros((10, 10), int)
    for r in rows:
        again[int(r["actual"]), int(r["predicted"])] += 1
    assert np.array_equal(again, matrix)
    recall = [c["recall"] for c in table["per_class"]]
    assert np.allclose(recall, np.diag(matrix) / matrix.sum(1))
    cal = table["calibration"]
    assert sum(b["count"] for b in cal["table"]) == 270 and test["ece"] == cal["ece"] > 0
    for name in ("confusion_matrix.png", "reliability.png"):
        assert (reports / "evaluation" / name).read_bytes()[:4] == b"\x89PNG"
    md = (reports / "evaluation" / "report.md").read_text()
    assert "## Per class" in md and "![Calibration](reliability.png)" in md and f"{test['ece']:.4f}" in md
    page = (reports / "evaluation" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<td>gates.min_test_accuracy</td>" in page
    assert "gates.champion" not in page  # it compares with the model packaged before: history, in champion.json
    assert "src=\"http" not in page  # self-contained
    card = (reports / "model_card.md").read_text()
    assert "(evaluation/report.md)" in card and "| gates.min_test_accuracy |" in card and "gates.champion" not in card


def test_dvc_yaml_declares_the_evaluation_plots():
    import yaml

    from conftest import ROOT

    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    ids = {next(iter(p)): p[next(iter(p))] for p in plots if isinstance(p, dict)}
    assert ids["confusion"]["template"] == "confusion"
    assert ids["confusion"]["y"] == {"reports/evaluation/predictions.csv": "predicted"}
    assert "reports/evaluation/reliability.png" in plots


def _weaker(cfg):
    """The tiny model's config made much worse: one epoch of a 1-channel CNN at a tiny learning rate."""
    cfg.trainer.epochs, cfg.model.channels, cfg.model.hidden = 1, 1, 4
    cfg.trainer.optimizer.lr = 1e-4
    return cfg


def test_champion_gate_stops_a_weaker_challenger_and_keeps_the_packaged_model(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "trained", "reports", "bento")
    champion = io.read_json(paths(cfg)["bento"] / "bento.json")
    before = (paths(cfg)["bento"] / "bento.json").read_bytes()
    assert champion["metrics"]["test"]["accuracy"] == tiny_run[1]["evaluate"]["accuracy"]
    cfg.gates.champion.margin = 0.005
    get("train").run(_weaker(cfg))
    with pytest.raises(GateFailed) as e:
        get("evaluate").run(cfg)
    message = str(e.value)
    theirs = champion["metrics"]["test"]["accuracy"]
    ours = io.read_json(paths(cfg)["reports"] / "metrics.json")["test"]["accuracy"]
    assert ours < theirs - 0.005
    assert message.startswith("gates.champion: the challenger's test accuracy")
    assert f"{ours:.4f}" in message and f"{theirs:.4f}" in message and champion["bento_tag"] in message
    assert "margin=0.005 allows 0.50" in message
    gates = io.read_json(paths(cfg)["reports"] / "evaluation" / "gates.json")
    challenge = io.read_json(paths(cfg)["reports"] / "evaluation" / "champion.json")
    assert [g["passed"] for g in gates] == [True] and not challenge["passed"] and challenge["champion"] == theirs
    assert (paths(cfg)["bento"] / "bento.json").read_bytes() == before  # package never ran: same Bento served


def test_champion_gate_passes_within_the_margin_and_without_a_champion(tiny_run, tmp_path):
    cfg = copy_outputs(tiny_run[0], tmp_path, "reports", "bento")
    cfg.gates.champion.margin = 0.0
    get("evaluate").run(cfg)  # the packaged model is this one: nothing to decide
    gate = io.read_json(paths(cfg)["reports"] / "evaluation" / "champion.json")
    assert gate["passed"] and "this model is the packaged one" in gate["value"]
    champion = io.read_json(paths(cfg)["bento"] / "bento.json")
    io.write_json(paths(cfg)["bento"] / "bento.json", champion | {"trained_sha256": "another model"})
    get("evaluate").run(cfg)  # another model with the same accuracy: 0 points below, within margin 0
    gate = io.read_json(paths(cfg)["reports"] / "evaluation" / "champion.json")
    assert gate["passed"] and "+0.00 points" in gate["value"]
    cfg.paths.bento = str(tmp_path / "nothing-packaged")
    get("evaluate").run(cfg)
    gate = io.read_json(paths(cfg)["reports"] / "evaluation" / "champion.json")
    assert gate["passed"] and "no model is packaged yet" in gate["value"]
    # A model packaged for other data (the project switched to `data=wine`) is no champion of this one.
    cfg.paths.bento = str(tmp_path / "bento")
    cfg.serve.bento_name = "maas-wine"
    get("evaluate").run(cfg)
    gate = io.read_json(paths(cfg)["reports"] / "evaluation" / "champion.json")
    assert gate["passed"] and "serves other data (this is maas-wine)" in gate["value"]


def test_evaluating_the_packaged_model_again_changes_no_tracked_output(tiny_run, tmp_path):
    """Whatever is packaged now, the same model gives the same report, plots and gates: only champion.json,
    which DVC doesn't hash (.dvcignore), records the comparison with the packaged model."""
    cfg = copy_outputs(tiny_run[0], tmp_path, "reports", "bento")
    folder = paths(cfg)["reports"] / "evaluation"
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    get("evaluate").run(cfg)
    after = {f.name: f.read_bytes() for f in folder.iterdir()}
    assert [name for name in before if before[name] != after.get(name)] == ["champion.json"]
    assert "this model is the packaged one" in io.read_json(folder / "champion.json")["value"]
    assert "champion.json" in (ROOT / ".dvcignore").read_text().split()


@pytest.mark.parametrize("key, value, message", [
    ("gates.champion.metric", "loss", "gates.champion.metric='loss'"),
    ("gates.champion.margin", 5, r"gates.champion.margin=5 must be a number in \[0, 1\]"),
])
def test_champion_gate_settings_are_checked(tiny_run, tmp_path, key, value, message):
    from omegaconf import OmegaConf

    cfg = copy_outputs(tiny_run[0], tmp_path, "reports")
    OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError, match=message):
        get("evaluate").run(cfg)


def test_a_corrupt_champion_record_is_named(tiny_run, tmp_path):
    from maas.errors import ArtifactError

    cfg = copy_outputs(tiny_run[0], tmp_path, "reports", "bento")
    (paths(cfg)["bento"] / "bento.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="bento.json is not valid JSON"):
        get("evaluate").run(cfg)
