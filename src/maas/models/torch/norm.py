"""BatchNorm or GroupNorm by the model config's `norm` (see maas.models.norm)."""

from __future__ import annotations

from torch import nn

from maas.models.norm import check, groups


def norm2d(kind: str, channels: int) -> nn.Module:
    check(kind)
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(groups(channels), channels)
