"""What every Keras family shares: NCHW in, built on construction, stable weight names.

maas feeds every model (N, C, H, W) float32, as the preprocessor emits it, so
each Keras model's first step transposes to NHWC, the layout Keras layers
expect. Every layer gets an explicit name (Keras would otherwise number them
per process: dense_3, dense_7, ...), so weight names are the same in every
process and a stored model always finds its arrays. Models create their
variables in their constructor, like torch modules, so weights can be read
and set right after `build`.
"""

from __future__ import annotations

from maas.backends.tensorflow import keras as _keras

keras = _keras()
ops = keras.ops
layers = keras.layers


def to_nhwc(x):
    return ops.transpose(x, (0, 2, 3, 1))


def to_nchw(x):
    return ops.transpose(x, (0, 3, 1, 2))


def batch_norm(name: str):
    # torch's BatchNorm2d defaults: running stats move 10% per batch (Keras counts the other way:
    # momentum is what stays, 0.99 by default, far too slow for a few hundred steps), eps 1e-5.
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def norm_layer(kind: str, channels: int, name: str):
    """`norm: batch | group` (maas.models.norm): GroupNorm with torch's groups and eps."""
    from maas.models.norm import check, groups

    check(kind)
    if kind == "batch":
        return batch_norm(name)
    return layers.GroupNormalization(groups=groups(channels), epsilon=1e-5, name=name)


def layer_norm(name: str):
    return layers.LayerNormalization(epsilon=1e-5, name=name)  # torch's eps


class MaasModel(keras.Model):
    """A Keras model taking NCHW images; subclasses create their layers, then call `_build`."""

    def _build(self, input_shape: tuple[int, ...]) -> None:
        self.maas_input_shape = tuple(int(d) for d in input_shape)  # one example's shape, without the batch
        self(ops.zeros((1, *self.maas_input_shape)), training=False)
