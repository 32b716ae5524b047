"""Every torch architecture in the table builds from its shipped config and behaves like a classifier;
the autoencoder's reconstruction error tells noised digits from clean ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from maas.config import compose
from maas.errors import ConfigError
from maas.models import build_model
from maas.models.torch import ARCHITECTURES
from maas.models.torch.transformer import Transformer

NAMES = sorted(ARCHITECTURES)


@pytest.fixture(autouse=True)
def _one_thread():
    # Other tests and developers share the CPU; these models are too small to gain from threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 1, 8, 8), standardised per pixel as the preprocessor does."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    std = x.std(0)
    x = (x - x.mean(0)) / np.where(std > 0, std, 1.0)
    return torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8), torch.tensor(y)


def build(name: str, *overrides: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(compose([f"model={name}", *overrides]).model)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_builds_and_gives_logits(name):
    model = build(name)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "mlp"])  # mlp's config fixes in_features=64
def test_other_image_shapes_and_channels(name):
    model = build(name, "data.image_shape=[3,12,12]", "data.num_classes=4")
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 4)


@pytest.mark.parametrize("name", NAMES)
def test_eval_output_does_not_depend_on_the_batch(name):
    model = build(name).eval()
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        batch = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_a_prediction_is_bit_identical_whatever_it_is_batched_with(name, digits):
    """What the Bento's adaptive batching relies on: a request's answer can't depend on its batch-mates."""
    from maas.backends.torch.api import predictor

    p = predictor(build(name))
    x = digits[0][:40].numpy()
    together = p.predict(x)
    alone = np.concatenate([p.predict(x[i:i + 1]).proba for i in range(len(x))])
    reversed_order = p.predict(x[::-1])
    in_odd_groups = np.concatenate([p.predict(x[i:i + 7]).proba for i in range(0, len(x), 7)])
    assert np.array_equal(alone, together.proba)
    assert np.array_equal(reversed_order.proba[::-1], together.proba)
    assert np.array_equal(in_odd_groups, together.proba)
    if together.anomaly is not None:
        assert np.array_equal(reversed_order.anomaly[::-1], together.anomaly)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_on_one_batch_reduce_the_loss(name, digits):
    model = build(name)
    x, y = digits[0][:32], digits[1][:32]
    # The trainer's optimizer and peak lr: plain SGD barely moves a 2-layer LSTM in 20 steps.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return F.cross_entropy(model(x), y).item()

    before = eval_loss()
    for _ in range(20):
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    assert after < 0.5 * before, f"{name}: loss {before:.3f} -> {after:.3f} after 20 steps on one batch"


def test_autoencoder_reconstructs_and_scores_each_image():
    model = build("autoencoder").eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert model.reconstruct(x).shape == x.shape
        scores = model.anomaly_score(x)
    assert scores.shape == (5,) and scores.dtype == torch.float32 and bool((scores >= 0).all())
    assert model.joint_loss(x, torch.arange(5)).shape == ()


def test_autoencoder_scores_noised_digits_higher_after_training(digits):
    from sklearn.metrics import roc_auc_score

    x, y = digits
    train, test = slice(0, 1400), slice(1400, None)
    model = build("autoencoder")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(2):
        order = torch.randperm(1400, generator=generator)
        for i in range(0, 1400, 64):
            idx = order[i:i + 64]
            loss = model.joint_loss(x[train][idx], y[train][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    clean = x[test]
    # One standard deviation of each (standardised) pixel: plainly visible noise on a digit.
    noised = clean + torch.randn(clean.shape, generator=generator)
    with torch.no_grad():
        scores = torch.cat([model.anomaly_score(clean), model.anomaly_score(noised)]).numpy()
    labels = np.r_[np.zeros(len(clean)), np.ones(len(clean))]
    # Two epochs already give ~0.99; a model that ignored its input would give 0.5.
    assert roc_auc_score(labels, scores) > 0.95


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"dim": 30, "heads": 4}, ("dim (30)", "heads (4)")),
    ({"image_size": 8, "patch_size": 3}, ("image_size (8)", "patch_size (3)")),
])
def test_transformer_refuses_bad_shapes_naming_the_arguments(kwargs, named):
    with pytest.raises(ValueError) as error:
        Transformer(**kwargs)
    assert all(word in str(error.value) for word in named)


def test_bad_model_argument_in_config_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dim \(30\).*heads \(4\)"):
        build("transformer", "model.dim=30")
