"""What compress reports: every variant tried as a Markdown table, and measured ones on one chart (reports/compression.png)."""

from __future__ import annotations

from pathlib import Path

from maas import io


def plot_variants(variants: list[dict], chosen: str, path: str | Path, speed_batch: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    measured = [v for v in variants if "latency" in v]
    key = f"batch{speed_batch}"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    xs = [v["latency"][key]["p50_ms"] for v in measured]
    ys = [v["bytes"] / 1024 for v in measured]
    acc = [100 * v["val_accuracy"] for v in measured]
    points = ax.scatter(xs, ys, c=acc, cmap="viridis", s=[160 if v["method"] == chosen else 60 for v in measured],
                        edgecolors=["red" if v["method"] == chosen else "none" for v in measured], linewidths=2)
    for v, x, y in zip(measured, xs, ys):
        ax.annotate(f"{v['method']}{' (chosen)' if v['method'] == chosen else ''}", (x, y),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    fig.colorbar(points, ax=ax, label="validation accuracy (%)")
    ax.set(xlabel=f"p50 latency at batch {speed_batch} (ms, one thread)", ylabel="stored size (KiB)",
           title="compression variants: size vs latency vs accuracy")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def variant_table(report: dict) -> str:
    """Markdown: one row per variant tried, with why a method was skipped or failed."""
    batches = sorted({int(k[5:]) for v in report["variants"] for k in v.get("latency", {})})
    head = ("| variant | runtime | stored bytes | val accuracy | test accuracy | "
            + " | ".join(f"p50 / p99 ms, batch {b}" for b in batches) + " |")
    lines = [head, "| " + " | ".join(["---"] * (5 + len(batches))) + " |"]
    for v in report["variants"]:
        name = f"**{v['method']}** (served)" if v["method"] == report["chosen"] else v["method"]
        if "latency" not in v:
            note = f"skipped: {v['skipped']}" if "skipped" in v else f"failed: {v.get('failed', '?')}"
            lines.append(f"| {name} | {note} |" + " |" * (3 + len(batches)))
            continue
        lat = " | ".join(f"{v['latency'][f'batch{b}']['p50_ms']:.3f} / {v['latency'][f'batch{b}']['p99_ms']:.3f}"
                         for b in batches)
        lines.append(f"| {name} | {v['runtime']} | {v['bytes']:,} | {v['val_accuracy']:.4f} | "
                     f"{v['test_accuracy']:.4f} | {lat} |")
    return "\n".join(lines)
