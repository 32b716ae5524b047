"""Recurrent classifiers that read an image as a sequence of rows.

Each row of a (C, H, W) image is one time step of C*W features (digits: 8 steps
of 8 features); the recurrent layers run top to bottom and the last layer's
final hidden state goes through dropout to a linear classifier. LSTM and GRU
differ only in their cell, so they share everything else here.
"""

from __future__ import annotations

import torch
from torch import nn


def rows_as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, C*W): one token per image row, all channels of that row side by side."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


class _RowRNN(nn.Module):
    cell: type[nn.RNNBase]

    def __init__(self, in_channels: int = 1, image_size: int = 8, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.2, num_classes: int = 10):
        super().__init__()
        # torch applies this dropout only between stacked layers, so a single layer gets none.
        self.rnn = self.cell(in_channels * image_size, hidden, num_layers=layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(rows_as_sequence(x))
        return self.head(out[:, -1])


class RowLSTM(_RowRNN):
    """LSTM over rows: H steps of C*W features, `hidden` units, `layers` deep, last state -> dropout -> linear."""

    cell = nn.LSTM


class RowGRU(_RowRNN):
    """GRU over rows: H steps of C*W features, `hidden` units, `layers` deep, last state -> dropout -> linear."""

    cell = nn.GRU
