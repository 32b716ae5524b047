"""A multilayer perceptron over the flattened input: the Keras twin of maas.models.torch.mlp.MLP."""

from __future__ import annotations

from maas.models.tensorflow.base import MaasModel, layers, ops


class MLP(MaasModel):
    """flatten, then (dense-relu-dropout) per hidden width, then a dense classifier."""

    def __init__(self, in_features: int = 64, hidden: list[int] = (128, 64), dropout: float = 0.1,
                 num_classes: int = 10):
        super().__init__(name="mlp")
        # Named by their index in torch's nn.Sequential (Flatten, then Linear-ReLU-Dropout triples).
        self.dense = [layers.Dense(int(h), name=f"net.{1 + 3 * i}") for i, h in enumerate(hidden)]
        self.drops = [layers.Dropout(dropout, name=f"net.{3 + 3 * i}") for i in range(len(hidden))]
        self.out = layers.Dense(num_classes, name=f"net.{1 + 3 * len(hidden)}")
        self.in_features = in_features
        self._build((in_features,))

    def call(self, x, training=False):
        # Flattening NCHW directly keeps torch's feature order (channel, row, column).
        h = ops.reshape(x, (ops.shape(x)[0], -1))
        if h.shape[-1] is not None and h.shape[-1] != self.in_features:
            raise ValueError(f"mlp expects {self.in_features} features per example, got {h.shape[-1]}")
        for dense, drop in zip(self.dense, self.drops):
            h = drop(ops.relu(dense(h)), training=training)
        return self.out(h)
