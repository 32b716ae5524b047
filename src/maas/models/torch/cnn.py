"""A small CNN for low-resolution single- or multi-channel images."""

from __future__ import annotations

import torch
from torch import nn

from maas.models.torch.norm import norm2d


class CNN(nn.Module):
    """conv-norm-relu, conv(2x wider)-norm-relu, 2x2 pool, then a dense head.

    At image_size=8 the pool leaves a 4x4 map, so the head sees 2*channels*16 features.
    `norm`: batch (BatchNorm) or group (GroupNorm, for differentially private training).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, channels: int = 32,
                 hidden: int = 128, dropout: float = 0.25, num_classes: int = 10, norm: str = "batch"):
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size must be even for the 2x2 pool, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), norm2d(norm, channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), norm2d(norm, 2 * channels), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * channels * (image_size // 2) ** 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
