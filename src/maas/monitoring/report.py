"""`maas monitor`'s report: summary.json (every number) and report.html (one self-contained page with its
figures embedded, eval_report's renderer) in `monitor.out`, beside the figures as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import io
from maas.eval_report import render_html
from maas.evaluation import _pyplot, _save
from maas.validation.drift import most_drifted

SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"
TOP_FEATURES = 20


def write(summary: dict[str, Any], out: str | Path) -> Path:
    """Write the report into `out` (created if missing); return the HTML page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = sections(summary, out)
    io.write_json(out / SUMMARY_FILE, summary)
    return io.write_text(out / REPORT_FILE, render_html(parts, out, title="Monitoring report"))


def sections(summary: dict[str, Any], figures: Path) -> list[tuple[str, object]]:
    from maas.monitoring.compare import headline

    r, features, shift = summary["requests"], summary["features"], summary["classes"]
    parts: list[tuple[str, object]] = [
        ("Summary", headline(summary)),
        ("", (["", ""], [["prediction log", f"`{summary['log_dir']}` ({summary['files']} files)"],
                          ["logged since", summary["since"] or "the start of the log"],
                          ["reference", f"`{summary['reference']['bento_tag']}` (model "
                                        f"`{summary['reference']['model_tag']}`), {summary['reference']['rows']} "
                                        "training rows"],
                          ["logged requests", f"{r['logged']} ({r['answered']} answered, {r['refused']} refused)"],
                          ["logged inputs", str(summary["inputs"])],
                          ["unreadable lines", str(summary["unreadable_lines"])]])),
        ("Checks", (["check", "value", "threshold", "result", "what"],
                    [[f"monitor.{c['check']}", _num(c["value"]), _num(c["threshold"]),
                      "**CROSSED**" if c["status"] == "crossed" else c["status"], c["detail"]]
                     for c in summary["checks"]])),
    ]
    method = features["method"]
    if features.get("columns"):
        parts += [("Feature drift", f"Per feature, {method.upper()} of the logged inputs against the training "
                                    f"profile (both PSI and KS are computed; `drift.method` chooses the judged one). "
                                    f"`chance` is about what {summary['inputs']} rows score with no drift at all."),
                  ("", plot_features(features, figures / "feature_drift.png"))]
        if summary["kind"] == "images" and summary.get("image_shape"):
            parts.append(("", plot_pixels(summary, figures / "pixel_drift.png")))
        top = most_drifted(features)[:15]
        parts.append(("", (["feature", "PSI", "KS", "chance", "mean (train -> logged)", "status"],
                           [[name, _num(c["psi"]), _num(c["ks"]), _num(c.get("chance")),
                             f"{_num(c.get('reference_mean'))} -> {_num(c.get('mean'))}" if "reference_mean" in c
                             else ", ".join(map(str, c.get("unseen_values", []))), c["status"]]
                            for name, c in top])))
    if "psi" in shift:
        parts += [("Predicted classes", f"The served model's predicted classes against the training labels: PSI "
                                        f"{shift['psi']:.4f}, total variation {shift['tvd']:.4f} over "
                                        f"{shift['rows']} logged inputs (chance {shift['chance']:.4f})."),
                  ("", plot_classes(shift, figures / "class_shift.png")),
                  ("", (["class", "training share", "predicted share"],
                        [[k, _num(shift["reference"].get(k, 0.0)), _num(v)] for k, v in shift["observed"].items()]))]
    else:
        parts.append(("Predicted classes", f"Not compared: {shift['reason']}."))
    parts.append(("Refused requests", f"{r['refused']} of {r['logged']} logged requests were refused"
                                      + (f" ({r['rejected_rate']:.2%})." if r["logged"] else ".")))
    if r["by_status"]:
        parts.append(("", (["status", "requests"], [[s, str(n)] for s, n in r["by_status"].items()])))
    if r["top_errors"]:
        parts.append(("", (["error (most frequent first)", "requests"],
                           [[e["error"], str(e["requests"])] for e in r["top_errors"]])))
    return parts


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_features(features: dict, path: Path) -> str:
    """The most drifted features' judged statistic as bars, with the thresholds."""
    plt = _pyplot()
    method = features["method"]
    top = most_drifted(features)[:TOP_FEATURES][::-1]
    colours = {"fail": "tab:red", "warn": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.5), dpi=100)
    ax.barh([n for n, _ in top], [c[method] for _, c in top], color=[colours.get(c["status"], "tab:blue") for _, c in top])
    for key, style in (("fail", "r--"), ("warn", "y:")):
        if features.get(key) is not None:
            ax.axvline(features[key], color=style[0], linestyle=style[1:], label=f"{key} {features[key]:g}")
    ax.set(xlabel=method.upper(), title=f"Most drifted features ({method.upper()}, top {len(top)})")
    if features.get("fail") is not None or features.get("warn") is not None:
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return path.name


def plot_pixels(summary: dict, path: Path) -> str:
    """Training mean image, logged mean image, and each pixel's judged statistic, in the image's layout."""
    from maas.data.profile import pixel_order

    plt = _pyplot()
    features, method = summary["features"], summary["features"]["method"]
    shape = summary["image_shape"]
    names = pixel_order({"columns": features["columns"]})
    size = int(np.prod(shape))
    if len(names) != size:  # some pixels were not compared: no image to draw
        return plot_features(features, path)
    h, w = shape[-2:]

    def image(key: str) -> np.ndarray:
        values = np.array([np.nan if features["columns"][n].get(key) is None else features["columns"][n][key]
                           for n in names], np.float64).reshape(-1, h, w)
        return np.nanmax(values, 0) if key == method else values.mean(0)  # channels: the worst, or their mean

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=100)
    for ax, key, title, cmap in ((axes[0], "reference_mean", "training mean", "gray_r"),
                                 (axes[1], "mean", "logged mean", "gray_r"),
                                 (axes[2], method, f"{method.upper()} per pixel", "Reds")):
        im = ax.imshow(image(key), cmap=cmap)
        ax.set(title=title, xticks=[], yticks=[])
        fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)
    return path.name


def plot_classes(shift: dict, path: Path) -> str:
    plt = _pyplot()
    names = list(shift["observed"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.bar(x - 0.2, [shift["reference"].get(k, 0.0) for k in names], 0.4, label="training labels", color="grey")
    ax.bar(x + 0.2, [shift["observed"][k] for k in names], 0.4, label="predicted (logged)", color="tab:blue")
    ax.set(xticks=x, xticklabels=names, xlabel="class", ylabel="share",
           title=f"Predicted classes vs training labels (PSI {shift['psi']:.3f})")
    ax.legend(fontsize=8)
    _save(fig, path)
    return path.name


def checks_markdown(summary: dict[str, Any]) -> str:
    """The verdict and the checks as Markdown (the Prefect run's artifact)."""
    from maas.monitoring.compare import headline

    rows = [f"| monitor.{c['check']} | {_num(c['value'])} | {_num(c['threshold'])} | "
            f"{'**CROSSED**' if c['status'] == 'crossed' else c['status']} | {c['detail']} |" for c in summary["checks"]]
    return "\n".join([headline(summary), "", "| check | value | threshold | result | what |", "|---|---|---|---|---|",
                      *rows]) + "\n"
