"""A small CNN for low-resolution images: the Keras twin of maas.models.torch.cnn.CNN."""

from __future__ import annotations

from maas.models.tensorflow.base import MaasModel, layers, norm_layer, ops, to_nhwc


class CNN(MaasModel):
    """conv-norm-relu, conv(2x wider)-norm-relu, 2x2 max pool, then dropout-dense-relu-dropout-dense.

    At image_size=8 the pool leaves a 4x4 map, so the head sees 2*channels*16 features.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, channels: int = 32,
                 hidden: int = 128, dropout: float = 0.25, num_classes: int = 10, norm: str = "batch"):
        super().__init__(name="cnn")
        if image_size % 2:
            raise ValueError(f"image_size must be even for the 2x2 pool, got {image_size}")
        self.features = [
            layers.Conv2D(channels, 3, padding="same", name="features.0"),
            norm_layer(norm, channels, "features.1"),
            layers.Conv2D(2 * channels, 3, padding="same", name="features.3"),
            norm_layer(norm, 2 * channels, "features.4"),
        ]
        self.pool = layers.MaxPooling2D(2, name="features.6")
        self.drop1 = layers.Dropout(dropout, name="head.1")
        self.fc1 = layers.Dense(hidden, name="head.2")
        self.drop2 = layers.Dropout(dropout, name="head.4")
        self.fc2 = layers.Dense(num_classes, name="head.5")
        self._build((in_channels, image_size, image_size))

    def call(self, x, training=False):
        h = to_nhwc(x)
        for conv, bn in zip(self.features[::2], self.features[1::2]):
            h = ops.relu(bn(conv(h), training=training))
        h = ops.reshape(self.pool(h), (ops.shape(h)[0], -1))
        h = ops.relu(self.fc1(self.drop1(h, training=training)))
        return self.fc2(self.drop2(h, training=training))
