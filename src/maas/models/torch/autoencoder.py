"""A convolutional autoencoder whose code also feeds a classifier.

Encoder: conv 3x3 (channels) and a stride-2 conv 3x3 (2*channels), each with
BatchNorm (GroupNorm with `norm: group`, for differentially private training)
and ReLU, then a linear layer to a `code`-wide vector. Decoder mirrors it:
linear back to the half-size map, a stride-2 transposed conv and a 3x3 conv to
the input's channels, reconstructing the standardised input. A dropout +
linear head classifies from the code. Training minimises
cross-entropy + recon_weight * reconstruction MSE, so the code must both
separate classes and describe the image; the per-image reconstruction error is
the anomaly score served beside the prediction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from maas.models.torch.norm import norm2d


def _conv_norm_relu(conv: nn.Module, channels: int, norm: str) -> nn.Sequential:
    return nn.Sequential(conv, norm2d(norm, channels), nn.ReLU())


class Autoencoder(nn.Module):
    """Conv encoder (channels, 2*channels at half size) -> code -> mirrored decoder; classifier on the code."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, channels: int = 32, code: int = 32,
                 dropout: float = 0.2, recon_weight: float = 1.0, num_classes: int = 10, norm: str = "batch"):
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size must be even for the stride-2 convolution, got {image_size}")
        self.recon_weight = recon_weight
        self.half = (2 * channels, image_size // 2, image_size // 2)
        flat = 2 * channels * (image_size // 2) ** 2
        self.encoder = nn.Sequential(
            _conv_norm_relu(nn.Conv2d(in_channels, channels, 3, padding=1), channels, norm),
            _conv_norm_relu(nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), 2 * channels, norm),
            nn.Flatten(), nn.Linear(flat, code),
        )
        self.expand = nn.Sequential(nn.Linear(code, flat), nn.ReLU())
        self.decoder = nn.Sequential(
            _conv_norm_relu(nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), channels, norm),
            # No activation: standardised pixels are signed and unbounded.
            nn.Conv2d(channels, in_channels, 3, padding=1),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(code, num_classes))

    def _decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.expand(code).view(len(code), *self.half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(self.encoder(x))

    def joint_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        return (F.cross_entropy(self.head(code).float(), y)
                + self.recon_weight * F.mse_loss(self._decode(code).float(), x.float()))

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image mean squared reconstruction error, shape (N,)."""
        return (self.reconstruct(x).float() - x.float()).pow(2).flatten(1).mean(1)
