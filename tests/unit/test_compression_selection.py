"""compress.select: which measured variant is kept, from the numbers alone."""

from __future__ import annotations

import pytest

from maas.compression.selection import choose
from maas.errors import ConfigError


def variant(method, val, size, b1, b64):
    return {"method": method, "val_accuracy": val, "bytes": size,
            "latency": {"batch1": {"p50_ms": b1}, "batch64": {"p50_ms": b64}}}


REF = variant("none", 0.990, 600, 3.0, 12.0)
FAST_BIG = variant("onnx_fp32", 0.990, 600, 1.0, 3.0)
FAST_SMALL = variant("onnx_int8", 0.988, 160, 1.05, 2.5)   # 0.2 points below, 5% slower at batch 1
ROW_AT_A_TIME = variant("int8_dynamic", 0.990, 150, 0.5, 50.0)  # fastest alone, far slower at batch 64
INACCURATE = variant("int8_static", 0.980, 150, 0.4, 2.0)  # 1 point below


def test_fastest_within_the_budget_prefers_the_smaller_of_two_equally_fast():
    chosen, why = choose([REF, FAST_BIG, FAST_SMALL, ROW_AT_A_TIME, INACCURATE], REF, "fastest_within", 0.5, 1, 0.1)
    assert chosen is FAST_SMALL and "no slower than none at any batch size" in why
    # Without the tolerance, 5% is a real difference.
    assert choose([REF, FAST_BIG, FAST_SMALL], REF, "fastest_within", 0.5, 1, 0.0)[0] is FAST_BIG


def test_a_variant_slower_than_fp32_at_any_batch_size_is_not_the_fastest():
    assert choose([REF, ROW_AT_A_TIME], REF, "fastest_within", 0.5, 1, 0.1)[0] is REF
    assert choose([REF, ROW_AT_A_TIME], REF, "smallest_within", 0.5, 1, 0.1)[0] is ROW_AT_A_TIME


def test_the_budget_is_in_points_of_validation_accuracy():
    assert choose([REF, INACCURATE], REF, "smallest_within", 0.5, 1)[0] is REF
    assert choose([REF, INACCURATE], REF, "smallest_within", 1.0, 1)[0] is INACCURATE  # exactly 1 point: within
    chosen, why = choose([REF, FAST_SMALL], REF, "fastest_within", -1.0, 1)
    assert chosen is REF and "no variant is within -1 points" in why


def test_an_unknown_selection_or_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="compress.select='cheapest'"):
        choose([REF], REF, "cheapest", 0.5, 1)
    with pytest.raises(ConfigError, match="compress.speed_batch=8 is not one of the measured batch sizes \\[1, 64\\]"):
        choose([REF], REF, "fastest_within", 0.5, 8)
