"""PyTorch architectures, by the names configs and model files use."""

from maas.models.torch.autoencoder import Autoencoder
from maas.models.torch.cnn import CNN
from maas.models.torch.mlp import MLP
from maas.models.torch.rnn import RowGRU, RowLSTM
from maas.models.torch.transformer import Transformer

ARCHITECTURES: dict[str, type] = {
    "cnn": CNN, "mlp": MLP, "lstm": RowLSTM, "gru": RowGRU, "transformer": Transformer,
    "autoencoder": Autoencoder,
}
