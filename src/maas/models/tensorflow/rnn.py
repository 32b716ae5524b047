"""Recurrent classifiers that read an image as a sequence of rows: the Keras twins of
maas.models.torch.rnn.RowLSTM / RowGRU.

Each row of a (C, H, W) image is one time step of C*W features (digits: 8 steps
of 8 features); the recurrent layers run top to bottom and the last layer's
final hidden state goes through dropout to a dense classifier. As in torch,
`dropout` also sits between stacked layers (none inside a single layer).
Keras's GRU defaults to reset_after=True, the variant torch (and cuDNN) use.
"""

from __future__ import annotations

from maas.models.tensorflow.base import MaasModel, layers, ops


def rows_as_sequence(x):
    """(N, C, H, W) -> (N, H, C*W): one token per image row, all channels of that row side by side."""
    _, c, h, w = x.shape
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, h, c * w))


class _RowRNN(MaasModel):
    cell: type
    arch: str

    def __init__(self, in_channels: int = 1, image_size: int = 8, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.2, num_classes: int = 10):
        super().__init__(name=self.arch)
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.rnn = [self.cell(hidden, return_sequences=i < layers - 1, name=f"rnn.{i}") for i in range(layers)]
        self.between = [_layers.Dropout(dropout, name=f"rnn.drop{i}") for i in range(layers - 1)]
        self.drop = _layers.Dropout(dropout, name="head.0")
        self.fc = _layers.Dense(num_classes, name="head.1")
        self._build((in_channels, image_size, image_size))

    def call(self, x, training=False):
        h = rows_as_sequence(x)
        for i, rnn in enumerate(self.rnn):
            if i:
                h = self.between[i - 1](h, training=training)
            h = rnn(h, training=training)
        return self.fc(self.drop(h, training=training))


_layers = layers  # the constructor's `layers` argument (depth) shadows the module inside __init__


class RowLSTM(_RowRNN):
    """LSTM over rows: H steps of C*W features, `hidden` units, `layers` deep, last state -> dropout -> dense."""

    cell = layers.LSTM
    arch = "lstm"


class RowGRU(_RowRNN):
    """GRU over rows: H steps of C*W features, `hidden` units, `layers` deep, last state -> dropout -> dense."""

    cell = layers.GRU
    arch = "gru"
