"""The model card: what the model is, how well it does, and what made it."""

from __future__ import annotations

from typing import Any


def build_card(*, model_tag: str, spec: dict, metrics: dict, compression: dict, validation: dict,
               gates: list[dict] | None = None) -> dict[str, Any]:
    cfg = spec.get("config", {})
    return {
        "model_tag": model_tag,
        "architecture": spec["model"],
        "input_shape": spec["input_shape"],
        "classes": spec["classes"],
        "compression": compression,
        "metrics": metrics,
        "gates": [{k: g[k] for k in ("gate", "compares", "threshold", "value", "passed") if k in g} | (
            {"champion_bento": g["champion_bento"]} if g.get("champion_bento") else {}) for g in gates or []],
        "training": spec.get("training", {}),
        "data": {"file": validation.get("data_file"), "md5": validation.get("data_md5"),
                 "rows": validation.get("rows"), "suite": validation.get("suite"),
                 "quarantined": (validation.get("quarantine") or {}).get("rows", 0)},
        "config": cfg,
    }


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
- input: raw images shaped {card['input_shape']}, classes {card['classes']}
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
Served variant **{comp['chosen']}**: {comp['why']}. It is {comp['size_ratio']:.2f}x smaller and
{comp['speedup']:.2f}x faster at batch {comp['speed_batch']} than fp32, test accuracy {comp['served_test_accuracy']:.4f}.
Latency is on one CPU thread, measured side by side in the compress stage.

{variant_table(comp)}

## Data
- file: `{data['file']}` (md5 `{data['md5']}`, {data['rows']} rows{quarantined})
- validated by Great Expectations suite `{data['suite']}`

## Training
{', '.join(f'{k}={v}' for k, v in card['training'].items())}

The full resolved config the model was trained with is in model_card.json under `config`
(later stages' settings, e.g. `compress` and `serve`, are as of training; the sections above are current).
"""
