"""The normalization a conv family uses: `norm: batch | group` in its model config, for both backends.

`group` exists for differentially private training: DP-SGD needs each example's own
gradient, and BatchNorm mixes the examples of a batch. GroupNorm normalizes each
example by itself. Its groups are Opacus's choice when `ModuleValidator.fix` puts a
GroupNorm in a BatchNorm's place (gcd(32, channels)), so a model trained privately
is rebuilt from its model.yaml exactly as it was trained.
"""

from __future__ import annotations

import math

NORMS = ("batch", "group")
MAX_GROUPS = 32  # Opacus's default, and the Group Normalization paper's


def groups(channels: int) -> int:
    return math.gcd(MAX_GROUPS, channels)


def check(kind: str) -> None:
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r} is not one of {list(NORMS)}")
