"""Which measured variant to keep: the fastest or smallest within an accuracy budget on validation."""

from __future__ import annotations

from typing import Any

from maas.errors import ConfigError

TOLERANCE = 1e-9  # accuracy is a ratio of counts: equal ratios must compare equal after the subtraction


def within_budget(variants: list[dict[str, Any]], reference: dict[str, Any], budget_points: float) -> list[dict]:
    """The measured variants whose validation accuracy is at most `budget_points` percentage points
    below the reference's (a negative budget demands a gain)."""
    floor = reference["val_accuracy"] - budget_points / 100.0
    return [v for v in variants if "val_accuracy" in v and v["val_accuracy"] >= floor - TOLERANCE]


def choose(variants: list[dict[str, Any]], reference: dict[str, Any], select: str, budget_points: float,
           speed_batch: int, speed_tolerance: float = 0.0) -> tuple[dict[str, Any], str]:
    """(the chosen variant, why). `fastest_within`: lowest p50 latency at `speed_batch` among the variants
    no slower than the reference at any measured batch size, where p50s within `speed_tolerance` (a
    fraction) of the fastest count as equally fast and the smallest of those wins;
    `smallest_within`: fewest bytes, then fastest. The reference (fp32) is within its own budget
    when the budget is >= 0; with no variant left (a negative budget), the reference is kept."""
    ok = within_budget(variants, reference, budget_points)
    if not ok:
        return reference, (f"no variant is within {budget_points:g} points of the reference's validation accuracy "
                           f"{reference['val_accuracy']:.4f}; keeping {reference['method']}")
    key = f"batch{speed_batch}"
    if any(key not in v["latency"] for v in ok):
        raise ConfigError(f"compress.speed_batch={speed_batch} is not one of the measured batch sizes "
                          f"{sorted(int(k[5:]) for k in ok[0]['latency'])}")
    speed = lambda v: v["latency"][key]["p50_ms"]  # noqa: E731
    if select == "fastest_within":
        # Fast at one batch size but slower than fp32 at another (int8_dynamic runs one row per pass)
        # would make the served model slower under load, when the batcher fills its batches.
        steady = [v for v in ok if all(v["latency"][b]["p50_ms"] <= reference["latency"][b]["p50_ms"] *
                                       (1 + speed_tolerance) for b in reference["latency"])]
        ok = steady or [reference]
        fastest = min(speed(v) for v in ok)
        # Timings on a busy machine wobble by a few percent: without a tolerance, which of two equally
        # fast variants is kept would change from run to run.
        best = min((v for v in ok if speed(v) <= fastest * (1 + speed_tolerance)), key=lambda v: (v["bytes"], speed(v)))
        why = (f"fastest at batch {speed_batch} ({speed(best):.3f} ms p50; within {100 * speed_tolerance:g}% of "
               f"the fastest, the smallest) of those no slower than {reference['method']} at any batch size,")
    elif select == "smallest_within":
        best = min(ok, key=lambda v: (v["bytes"], speed(v)))
        why = f"smallest ({best['bytes']:,} bytes)"
    else:
        raise ConfigError(f"compress.select={select!r}; choose fastest_within or smallest_within")
    return best, (f"{why} of {len(ok)} variant(s) within {budget_points:g} points of "
                  f"{reference['method']}'s validation accuracy {reference['val_accuracy']:.4f}")
