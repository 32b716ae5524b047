"""PyTorch architectures, by the names configs and model files use."""

from maas.models.torch.cnn import CNN
from maas.models.torch.mlp import MLP

ARCHITECTURES: dict[str, type] = {"cnn": CNN, "mlp": MLP}
