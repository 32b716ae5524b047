"""The model card: what the model is, how well it does, and what made it."""

from __future__ import annotations

import math
from typing import Any

from maas.backends.privacy import spent


def build_card(*, model_tag: str, spec: dict, metrics: dict, compression: dict, validation: dict,
               gates: list[dict] | None = None, config: dict | None = None,
               table_columns: list[dict] | None = None) -> dict[str, Any]:
    """`config`: the pipeline's config (every key a stage reads), `table_columns`: a table model's request
    columns (maas.serving.table_requests.request_columns). Nothing that differs between two runs on the
    same inputs (timings, comparisons with the model packaged before) goes in: the card is in the Bento."""
    cfg = config or {}
    return {
        "model_tag": model_tag,
        "architecture": spec["model"],
        "input_shape": spec["input_shape"],
        **({"columns": table_columns} if table_columns else {}),
        "classes": spec["classes"],
        # An image folder's class sub-folders, in class-index order (data.class_names); absent for digits.
        **({"class_names": list(names)} if (names := cfg.get("data", {}).get("class_names")) else {}),
        "compression": compression,
        "metrics": metrics,
        "gates": [{k: g[k] for k in ("gate", "compares", "threshold", "value", "passed") if k in g} | (
            {"champion_bento": g["champion_bento"]} if g.get("champion_bento") else {}) for g in gates or []],
        "training": spec.get("training", {}),
        # The differential privacy guarantee, where the model has one: (epsilon, delta) spent in training.
        "privacy": spent(spec),
        "data": {"file": validation.get("data_file"), "md5": validation.get("data_md5"),
                 "rows": validation.get("rows"), "suite": validation.get("suite"),
                 "quarantined": (validation.get("quarantine") or {}).get("rows", 0)},
        "config": cfg,
    }


def _input(card: dict) -> str:
    columns = card.get("columns")
    if not columns:
        return f"raw images shaped {card['input_shape']}"
    said = [f"`{c['name']}`" + (f" (one of {', '.join(map(str, c['categories']))})" if c["type"] == "categorical"
                                else "") + ("" if c.get("nullable") else " (never null)") for c in columns]
    return (f"table rows, `{{\"rows\": [{{column: value, ...}}]}}`, of {len(columns)} columns "
            f"(numeric unless categories are listed; null is filled unless marked never null): {', '.join(said)}")


def render_markdown(card: dict) -> str:
    m, comp, data = card["metrics"], card["compression"], card["data"]
    from maas.compression.report import variant_table

    gate_rows = "\n".join(f"| {g['gate']} | {g['compares']} | {g['threshold']} | {g['value']} | "
                          f"{'pass' if g['passed'] else 'FAIL'} |" for g in card.get("gates", []))
    arch = card["architecture"]
    quarantined = f", {data['quarantined']} quarantined and left out" if data.get("quarantined") else ""
    return f"""# Model card: {card['model_tag']}

## Model
- architecture: `{arch.get('arch')}` ({', '.join(f'{k}={v}' for k, v in arch.items() if k != 'arch')})
- input: {_input(card)}, classes {_classes(card)}
- served variant: **{comp['chosen']}**

## Metrics (held-out test split, fp32 model)
| metric | value |
| --- | --- |
| accuracy | {m['test']['accuracy']:.4f} |
| macro-F1 | {m['test']['macro_f1']:.4f} |
| expected calibration error | {m['test'].get('ece', float('nan')):.4f} |
| test samples | {m['test']['samples']} |
| best val accuracy | {m['val']['accuracy']:.4f} |

Per-class precision and recall, the confusion matrix and the reliability diagram:
[evaluation report](evaluation/report.md) ([HTML](evaluation/report.html)).

## Gates
| gate | compares | threshold | value | result |
| --- | --- | --- | --- | --- |
{gate_rows}

## Compression
Served variant **{comp['chosen']}**: {comp['why']}. It is {comp['size_ratio']:.2f}x smaller than fp32,
test accuracy {comp['served_test_accuracy']:.4f}. Latencies, measured side by side on one CPU thread, are in
reports/compression_timing.json (they differ on every run, so they are not part of the card).

{variant_table(comp)}

## Data
- file: `{data['file']}` (md5 `{data['md5']}`, {data['rows']} rows{quarantined})
- validated by Great Expectations suite `{data['suite']}`

## Privacy
{_privacy(card.get('privacy'))}

## Training
{', '.join(f'{k}={v}' for k, v in card['training'].items() if k != 'privacy')}

The resolved config of the pipeline that made this model (every key a stage reads) is in model_card.json
under `config`; `maas lineage` checks it against the workspace.
"""


def _classes(card: dict) -> str:
    names = card.get("class_names")
    if not names:
        return str(card["classes"])
    return ", ".join(f"{c} ({name})" for c, name in zip(card["classes"], names))


def _privacy(p: dict | None) -> str:
    if not p:
        return ("Not trained with differential privacy (`trainer.privacy.enabled=false`): nothing bounds what the "
                "model reveals about a training row.")
    epsilon = math.ceil(p["epsilon"] * 1000) / 1000  # rounded up: a card must not promise more than was kept
    return (f"Trained with DP-SGD ({p['library']}): the weights are **(epsilon = {epsilon:.3f}, delta = {p['delta']:g})"
            f"-differentially private** with respect to any one row of the {p['training_rows']:,}-row training split "
            f"(target epsilon {p['target_epsilon']:g}, {p['accountant']} accountant; noise multiplier "
            f"{p['noise_multiplier']:.3f}, per-example gradients clipped to {p['max_grad_norm']:g}, {p['steps']:,} steps of "
            f"Poisson-sampled batches at sample rate {p['sample_rate']:.4f}). Not covered: the preprocessing statistics "
            f"and the training-data profile packaged with the model are computed from the same rows without noise, and "
            f"the validation split chose the epoch (see docs/privacy.md).")
