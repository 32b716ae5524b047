"""A convolutional autoencoder whose code also feeds a classifier: the Keras twin of
maas.models.torch.autoencoder.Autoencoder.

Encoder: conv 3x3 (channels) and a stride-2 conv 3x3 (2*channels, padded by one
pixel on every side as in torch), each with BatchNorm (GroupNorm with `norm:
group`) and ReLU, then a dense layer to a `code`-wide vector. Decoder mirrors
it: dense back to the half-size map, a stride-2 transposed conv 4x4 and a 3x3
conv to the input's channels, reconstructing the standardised input. A
relu-dropout-dense head classifies from the code. Training minimises
cross-entropy + recon_weight * reconstruction MSE (`joint_loss`); the
per-image mean squared reconstruction error is the anomaly score served
beside the prediction. Both are computed on the NCHW input exactly as the
torch family computes them.
"""

from __future__ import annotations

from maas.models.tensorflow.base import MaasModel, keras, layers, norm_layer, ops, to_nchw, to_nhwc


class Autoencoder(MaasModel):
    """Conv encoder (channels, 2*channels at half size) -> code -> mirrored decoder; classifier on the code."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, channels: int = 32, code: int = 32,
                 dropout: float = 0.2, recon_weight: float = 1.0, num_classes: int = 10, norm: str = "batch"):
        super().__init__(name="autoencoder")
        if image_size % 2:
            raise ValueError(f"image_size must be even for the stride-2 convolution, got {image_size}")
        self.recon_weight = float(recon_weight)
        self.half = (image_size // 2, image_size // 2, 2 * channels)   # NHWC
        flat = 2 * channels * (image_size // 2) ** 2
        self.enc_conv1 = layers.Conv2D(channels, 3, padding="same", name="encoder.0.0")
        self.enc_bn1 = norm_layer(norm, channels, "encoder.0.1")
        self.enc_pad = layers.ZeroPadding2D(1, name="encoder.1.pad")
        self.enc_conv2 = layers.Conv2D(2 * channels, 3, strides=2, padding="valid", name="encoder.1.0")
        self.enc_bn2 = norm_layer(norm, 2 * channels, "encoder.1.1")
        self.enc_code = layers.Dense(code, name="encoder.3")
        self.expand = layers.Dense(flat, name="expand.0")
        self.dec_up = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name="decoder.0.0")
        self.dec_bn = norm_layer(norm, channels, "decoder.0.1")
        # No activation: standardised pixels are signed and unbounded.
        self.dec_out = layers.Conv2D(in_channels, 3, padding="same", name="decoder.1")
        self.head_drop = layers.Dropout(dropout, name="head.1")
        self.head = layers.Dense(num_classes, name="head.2")
        self._building = True  # the build pass runs the decoder too, so its variables exist from the start
        self._build((in_channels, image_size, image_size))
        self._building = False

    def encode(self, x, training=False):
        h = ops.relu(self.enc_bn1(self.enc_conv1(to_nhwc(x)), training=training))
        h = ops.relu(self.enc_bn2(self.enc_conv2(self.enc_pad(h)), training=training))
        return self.enc_code(ops.reshape(h, (ops.shape(h)[0], -1)))

    def decode(self, code, training=False):
        h = ops.reshape(ops.relu(self.expand(code)), (-1, *self.half))
        h = ops.relu(self.dec_bn(self.dec_up(h), training=training))
        return to_nchw(self.dec_out(h))

    def classify(self, code, training=False):
        return self.head(self.head_drop(ops.relu(code), training=training))

    def call(self, x, training=False):
        code = self.encode(x, training=training)
        if self._building:
            self.decode(code)
        return self.classify(code, training=training)

    def reconstruct(self, x, training=False):
        return self.decode(self.encode(x, training=training), training=training)

    def joint_loss(self, x, y, training=True):
        """Mean cross-entropy + recon_weight * mean squared reconstruction error, as the torch family."""
        code = self.encode(x, training=training)
        logits = ops.cast(self.classify(code, training=training), "float32")
        ce = ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        recon = ops.cast(self.decode(code, training=training), "float32")
        return ce + self.recon_weight * ops.mean(ops.square(recon - ops.cast(x, "float32")))

    def anomaly_score(self, x):
        """Per-image mean squared reconstruction error, shape (N,)."""
        err = ops.square(ops.cast(self.reconstruct(x), "float32") - ops.cast(x, "float32"))
        return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)
