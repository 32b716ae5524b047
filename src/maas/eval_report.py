"""The evaluation report, reports/evaluation/report.md and report.html, from the evaluate stage's numbers.

Both render the same sections from the same tables; the HTML embeds its figures
(base64 PNG), so the one file can be mailed or attached to a review as is.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

Table = tuple[list[str], list[list[str]]]


def sections(metrics: dict, per_class: list[dict], cal: dict, gates: list[dict], model: str) -> list[tuple[str, object]]:
    """(heading, a Table or a figure file name or a paragraph) in reading order."""
    test = metrics["test"]
    summary = [["accuracy", f"{test['accuracy']:.4f}"], ["macro-F1", f"{test['macro_f1']:.4f}"],
               ["expected calibration error", f"{test['ece']:.4f} ({cal['bins']} bins)"],
               ["test rows", str(test["samples"])], ["best validation accuracy", f"{metrics['val']['accuracy']:.4f}"]]
    if "anomaly_auroc" in test:
        summary.append(["anomaly score AUROC (clean vs noisy)", f"{test['anomaly_auroc']:.4f}"])
    return [
        ("Summary", f"Model `{model}` on the held-out test split (the uncompressed model; the served variant's "
                    "accuracy is in the model card's compression table)."),
        ("", (["metric", "value"], summary)),
        ("Gates", (["gate", "compares", "threshold", "value", "result"],
                   [[g["gate"], g["compares"], g["threshold"], g["value"], "pass" if g["passed"] else "**FAIL**"]
                    for g in gates])),
        ("Per class", (["class", "precision", "recall", "F1", "support"],
                       [[str(c["class"]), f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}",
                         str(c["support"])] for c in per_class])),
        ("Confusion matrix", "confusion_matrix.png"),
        ("Calibration", "reliability.png"),
        ("", (["confidence bin", "rows", "mean confidence", "accuracy"],
              [[f"({b['low']:.2f}, {b['high']:.2f}]", str(b["count"]), f"{b['confidence']:.4f}", f"{b['accuracy']:.4f}"]
               for b in cal["table"]])),
    ]


def render_markdown(parts: list[tuple[str, object]]) -> str:
    out = ["# Evaluation report", ""]
    for heading, body in parts:
        if heading:
            out += [f"## {heading}", ""]
        if isinstance(body, tuple):
            headers, rows = body
            out += ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
            out += ["| " + " | ".join(row) + " |" for row in rows]
        elif body.endswith(".png"):
            out.append(f"![{heading}]({body})")
        else:
            out.append(body)
        out.append("")
    return "\n".join(out)


def render_html(parts: list[tuple[str, object]], figures: Path, title: str = "Evaluation report") -> str:
    """`figures`: the folder holding the PNGs the parts name, embedded into the page."""
    out = ["<!doctype html>", f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;"
           "margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
           "td:first-child,th:first-child{text-align:left}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, body in parts:
        if heading:
            out.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, tuple):
            headers, rows = body
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</table>")
        elif body.endswith(".png"):
            data = base64.b64encode((figures / body).read_bytes()).decode()
            out.append(f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">')
        else:
            out.append(f"<p>{_cell(body)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    """Markdown's **bold** and `code`, the only markup the parts use, as HTML."""
    escaped = html.escape(text)
    for mark, tag in (("**", "strong"), ("`", "code")):
        pieces = escaped.split(mark)
        escaped = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return escaped
