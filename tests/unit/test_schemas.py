"""What /predict accepts, and the 4xx message for what it doesn't."""

from __future__ import annotations

import numpy as np
import pytest

from maas.serving.schemas import BadRequest, to_batch

SHAPE, RANGE = (1, 8, 8), (0.0, 16.0)


def image(v=0):
    return [[v] * 8 for _ in range(8)]


def test_good_batch_becomes_rows():
    out = to_batch([image(1), image(16)], SHAPE, RANGE, 10)
    assert out.shape == (2, 64) and out.dtype == np.float32 and out[1].max() == 16


def test_channel_first_images_are_accepted_too():
    assert to_batch([[image(3)]], SHAPE, RANGE, 10).shape == (1, 64)


@pytest.mark.parametrize("images, message", [
    ([], "non-empty list"),
    ("abc", "non-empty list"),
    ([image()] * 11, "at most 10 per request"),
    ([[[0] * 7] * 8], "each image must be 8x8, got 8x7"),
    ([[0] * 64], "each image must be 8x8, got 64"),
    ([1, 2], "got a number"),
    ([image(), [[0] * 8] * 7 + [[0] * 5]], r"images\[1\] is not a numeric 8x8 array"),
    ([[["a"] * 8] * 8], r"images\[0\] is not a numeric"),
    ([image(), [[0] * 8] * 7], r"images\[1\] is 7x8 but images\[0\] is 8x8"),
    ([image(), image(17)], r"images\[1\] has pixel values outside \[0, 16\]"),
    ([image(-1)], "outside"),
    ([image(float("nan"))], "NaN"),
])
def test_bad_batches_are_named(images, message):
    with pytest.raises(BadRequest, match=message):
        to_batch(images, SHAPE, RANGE, 10)
