"""Keras 3 architectures (on TensorFlow), by the names configs and model files use.

Each class takes exactly the keyword arguments (and defaults) of the torch
class of the same name, so one conf/model/<name>.yaml drives both backends.
Importing this package imports TensorFlow (seconds): only the tensorflow
backend does.
"""

from maas.models.tensorflow.autoencoder import Autoencoder
from maas.models.tensorflow.cnn import CNN
from maas.models.tensorflow.mlp import MLP
from maas.models.tensorflow.rnn import RowGRU, RowLSTM
from maas.models.tensorflow.transformer import Transformer

ARCHITECTURES: dict[str, type] = {
    "cnn": CNN, "mlp": MLP, "lstm": RowLSTM, "gru": RowGRU, "transformer": Transformer,
    "autoencoder": Autoencoder,
}
