"""An encoder-only Transformer over square image patches (a small Vision Transformer):
the Keras twin of maas.models.torch.transformer.Transformer.

The image is cut into non-overlapping patch_size x patch_size patches, each
linearly embedded to `dim` (a strided convolution) plus a learned positional
embedding; `depth` pre-norm encoder blocks (`heads` attention heads, a GELU MLP
`mlp_ratio` x dim wide, dropout on attention weights and after each residual
branch, as torch's TransformerEncoderLayer(norm_first=True)) run over the
tokens, and their final states, layer-normed and averaged, feed a dense
classifier.
"""

from __future__ import annotations

from maas.models.tensorflow.base import MaasModel, keras, layer_norm, layers, ops, to_nhwc


class EncoderBlock(layers.Layer):
    """x + drop(attn(norm1(x))), then x + drop(ff(norm2(x))), ff = dense-gelu-drop-dense."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float, name: str):
        super().__init__(name=name)
        self.norm1 = layer_norm("norm1")
        self.attn = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name="self_attn")
        self.drop1 = layers.Dropout(dropout, name="dropout1")
        self.norm2 = layer_norm("norm2")
        self.linear1 = layers.Dense(ff, name="linear1")
        self.drop = layers.Dropout(dropout, name="dropout")
        self.linear2 = layers.Dense(dim, name="linear2")
        self.drop2 = layers.Dropout(dropout, name="dropout2")

    def call(self, x, training=False):
        h = self.norm1(x)
        x = x + self.drop1(self.attn(h, h, training=training), training=training)
        h = self.linear2(self.drop(ops.gelu(self.linear1(self.norm2(x)), approximate=False), training=training))
        return x + self.drop2(h, training=training)


class Transformer(MaasModel):
    """ViT: patches -> dim-wide tokens + learned positions -> depth pre-norm blocks -> mean token -> dense."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, patch_size: int = 2, dim: int = 64,
                 depth: int = 3, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 num_classes: int = 10):
        super().__init__(name="transformer")
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        tokens = (image_size // patch_size) ** 2
        self.dim = dim
        self.patch = layers.Conv2D(dim, patch_size, strides=patch_size, name="patch")
        # Unit-variance positions, as large as the patch embeddings (torch's reasoning: ViT's usual
        # 0.02 leaves attention position-blind for most of a 40-epoch run on digits).
        self.pos = self.add_weight(shape=(1, tokens, dim),
                                   initializer=keras.initializers.RandomNormal(stddev=1.0), name="pos")
        self.drop = layers.Dropout(dropout, name="drop")
        self.blocks = [EncoderBlock(dim, heads, int(dim * mlp_ratio), dropout, name=f"encoder.layers.{i}")
                       for i in range(depth)]
        self.norm = layer_norm("encoder.norm")
        self.head = layers.Dense(num_classes, name="head")
        self._build((in_channels, image_size, image_size))

    def call(self, x, training=False):
        tokens = self.patch(to_nhwc(x))                                   # (N, h, w, dim), rows first
        tokens = ops.reshape(tokens, (ops.shape(tokens)[0], -1, self.dim))
        h = self.drop(tokens + ops.cast(self.pos, tokens.dtype), training=training)
        for block in self.blocks:
            h = block(h, training=training)
        return self.head(ops.mean(self.norm(h), axis=1))
