"""The evaluate stage's gates: absolute thresholds, and the challenger against the packaged champion.

Every gate yields a record (what it compares, its threshold, the value, pass or
fail) for the evaluation report and the model card; `enforce` then fails the
stage naming every gate that failed and both values.

The champion is the model packaged now: `{paths.bento}/bento.json`, which the
package stage writes with the model's metrics, so they travel with the Bento
and `dvc pull` brings them to a fresh clone. It is deliberately not a DVC
dependency of evaluate (it is package's output: DVC would see a cycle). A
challenger that fails stops the pipeline before package, so the champion stays
the one `maas serve` serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from maas import io
from maas.checks import choice, number
from maas.errors import ArtifactError, GateFailed

CHAMPION_METRICS = ("accuracy", "macro_f1")  # test-split metrics where higher is better
BENTO_FILE = "bento.json"


def absolute(cfg: DictConfig, test: dict[str, float]) -> list[dict[str, Any]]:
    floor = number(cfg, "gates.min_test_accuracy", 0.0, 1.0)
    return [{"gate": "gates.min_test_accuracy", "compares": "test accuracy", "threshold": f">= {floor:g}",
             "value": f"{test['accuracy']:.4f}", "passed": test["accuracy"] >= floor,
             "message": f"test accuracy {test['accuracy']:.4f} is below gates.min_test_accuracy={floor}"}]


def read_champion(bento_dir: Path) -> dict[str, Any] | None:
    """The packaged model's record (bento_tag, model_tag, metrics), or None when nothing is packaged yet."""
    path = bento_dir / BENTO_FILE
    if not path.exists():
        return None
    try:
        record = io.read_json(path)
    except ValueError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}): it says which model is packaged; "
                            f"run the package stage again to rewrite it") from None
    return record if isinstance(record, dict) else None


def champion(cfg: DictConfig, test: dict[str, float], bento_dir: Path, model_sha256: str) -> dict[str, Any]:
    """The challenger's test metric against the packaged model's, with `gates.champion.margin` to spare.
    `model_sha256` names the challenger (its trained weights' sha256)."""
    metric = choice(cfg, "gates.champion.metric", CHAMPION_METRICS)
    margin = number(cfg, "gates.champion.margin", 0.0, 1.0)
    name = metric.replace("_", "-")
    record = {"gate": "gates.champion", "compares": f"test {name} vs the packaged model's",
              "threshold": f"at most {100 * margin:.2f} points below", "metric": metric, "margin": margin,
              "challenger": test[metric], "challenger_sha256": model_sha256}
    packaged = read_champion(bento_dir)
    if packaged is not None and packaged.get("trained_sha256") == model_sha256:
        return record | {"value": f"{test[metric]:.4f} (this model is the packaged one)", "passed": True,
                         "champion": None}
    theirs = ((packaged or {}).get("metrics") or {}).get("test", {}).get(metric)
    other_data = packaged is not None and str(packaged.get("bento_tag", "")).split(":")[0] != cfg.serve.bento_name
    if theirs is None or other_data:
        # Scores on another dataset (after `maas compose data=...`) say nothing about this model.
        why = ("no model is packaged yet" if packaged is None
               else f"the packaged {packaged.get('bento_tag')} serves other data (this is {cfg.serve.bento_name})"
               if other_data
               else f"the packaged {packaged.get('bento_tag')} records no test {name} (packaged by an older maas)")
        return record | {"value": f"{test[metric]:.4f} ({why}: nothing to compare)", "passed": True, "champion": None}
    drop = theirs - test[metric]
    tag = packaged.get("bento_tag", "?")
    record |= {"champion": theirs, "champion_bento": tag, "champion_model": packaged.get("model_tag"),
               "value": f"{test[metric]:.4f} vs {theirs:.4f} ({100 * (test[metric] - theirs) + 0.0:+.2f} points)",
               "passed": drop <= margin + 1e-12}
    record["message"] = (
        f"gates.champion: the challenger's test {name} {test[metric]:.4f} is {100 * drop:.2f} points below the "
        f"packaged model's {theirs:.4f} ({tag}); gates.champion.margin={margin:g} allows {100 * margin:.2f}. The "
        f"pipeline stops before package, so `maas serve` keeps serving {tag}. To package this model anyway, run "
        f"again with gates.champion.margin=1")
    return record


def enforce(records: list[dict[str, Any]]) -> None:
    failed = [r["message"] for r in records if not r["passed"]]
    if failed:
        raise GateFailed("; ".join(failed))
