"""What /predict accepts, and the 400 message for what it doesn't."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maas import io
from maas.data.preprocessor import Preprocessor
from maas.serving.schemas import BadRequest, ImageSpec, parse_body, to_batch

INTS = ImageSpec((1, 8, 8), 0.0, 16.0, "int", 10)
FLOATS = ImageSpec((1, 8, 8), 0.0, 1.0, "float", 10)
PIXELS = r"pixels must be integers in \[0, 16\] \(the raw data's type and range\)"


def image(v=0, at=None):
    """An 8x8 image of zeros, or of `v`; with `at`, zeros except `v` at that (row, column)."""
    rows = [[0 if at else v] * 8 for _ in range(8)]
    if at:
        rows[at[0]][at[1]] = v
    return rows


def test_good_batch_becomes_rows():
    out = to_batch([image(1), image(16)], INTS)
    assert out.shape == (2, 64) and out.dtype == np.float32 and out[1].max() == 16


def test_channel_first_images_are_accepted_too():
    assert to_batch([[image(3)]], INTS).shape == (1, 64)


@pytest.mark.parametrize("images, message", [
    ([], "non-empty list"),
    ("abc", "non-empty list"),
    ([image()] * 11, "at most 10 per request"),
    ([[[0] * 7] * 8], "each image must be 8x8, got 8x7"),
    ([[0] * 64], "each image must be 8x8, got 64"),
    ([1, 2], "got a single value"),
    ([image(), [[0] * 8] * 7 + [[0] * 5]], r"images\[1\] is not a regular 8x8 array"),
    ([image(), [[0] * 8] * 7], r"images\[1\] is 7x8 but images\[0\] is 8x8"),
    ([image(), image(17)], r"images\[1\]\[0\]\[0\] is 17; " + PIXELS),
    ([image(-1)], r"images\[0\]\[0\]\[0\] is -1; "),
])
def test_bad_batches_are_named(images, message):
    with pytest.raises(BadRequest, match=message):
        to_batch(images, INTS)


@pytest.mark.parametrize("pixel, shown", [
    ("5", '"5"'),              # numpy would read these strings as numbers
    (" 1_0 ", '" 1_0 "'),
    (True, "true"),            # bool is an int to Python and numpy
    (3.5, "3.5"),
    (16.0, "16.0"),            # integral, but a float: not the raw data's type
    (10**309, "an integer of 1027 bits"),  # beyond float: OverflowError in numpy
    (float("nan"), "NaN"),
    (None, "null"),
    ("x", '"x"'),
    ({}, "{}"),
])
def test_a_pixel_of_another_type_is_named_with_what_was_expected(pixel, shown):
    with pytest.raises(BadRequest, match=rf"^images\[1\]\[2\]\[3\] is {shown}; " + PIXELS + "$"):
        to_batch([image(), image(pixel, at=(2, 3))], INTS)


def test_float_data_takes_floats_and_ints_but_not_strings_or_infinity():
    assert to_batch([image(0.5, at=(2, 3)), image(1)], FLOATS)[0, 19] == 0.5
    for pixel in ("0.5", float("inf"), False):
        with pytest.raises(BadRequest, match=r"images\[0\]\[2\]\[3\] is .*; pixels must be finite numbers in \[0, 1\]"):
            to_batch([image(pixel, at=(2, 3))], FLOATS)


def test_the_readme_image_scaled_to_floats_is_refused():
    scaled = (np.asarray(image(5, at=(0, 2))) / 16).tolist()
    with pytest.raises(BadRequest, match=r"images\[0\]\[0\]\[0\] is 0.0; " + PIXELS):
        to_batch([scaled], INTS)


@pytest.mark.parametrize("body, message", [
    (b'{"images": [[[0]]]', "the body is not valid JSON"),
    (b"", "the body is not valid JSON"),
    (b"[1]", 'JSON object with the field "images"'),
    (json.dumps({"pictures": [image()]}).encode(), 'the field "images"'),
    (json.dumps({"images": [image()], "scale": 1}).encode(), 'unknown field\\(s\\) "scale"'),
    (json.dumps({"images": [image(10**400, at=(0, 7))]}).encode(), r"images\[0\]\[0\]\[7\] is an integer of"),
])
def test_bad_bodies_are_named(body, message):
    with pytest.raises(BadRequest, match=message):
        parse_body(body, INTS)


def test_a_good_body_parses_to_rows():
    assert parse_body(json.dumps({"images": [image(2)]}).encode(), INTS).rows.shape == (1, 64)


def test_checking_a_full_batch_stays_cheap():
    """The check runs on every request; it must stay within a few times numpy's plain conversion."""
    import timeit

    images = np.random.default_rng(0).integers(0, 17, (512, 8, 8)).tolist()
    spec = ImageSpec((1, 8, 8), 0.0, 16.0, "int", 512)
    checked = min(timeit.repeat(lambda: to_batch(images, spec), number=5, repeat=5))
    plain = min(timeit.repeat(lambda: np.asarray(images, dtype=np.float32), number=5, repeat=5))
    assert checked < 6 * plain, (checked, plain)


def test_the_raw_type_travels_in_the_preprocessor_and_old_files_take_floats(tmp_path):
    pre = Preprocessor.fit(np.arange(128.0).reshape(2, 64) % 17, "none", (1, 8, 8), (0, 16), raw_dtype="int")
    assert Preprocessor.load(pre.save(tmp_path / "p.json")).raw_dtype == "int"
    old = io.read_json(tmp_path / "p.json")
    del old["raw_dtype"]
    io.write_json(tmp_path / "old.json", old)
    assert Preprocessor.load(tmp_path / "old.json").raw_dtype == "float"  # what such files' Bentos accepted


def test_a_declared_type_the_data_contradicts_is_a_config_error():
    from maas.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.feature_type=int but the training features hold fractions \(e.g. 0.5\)"):
        Preprocessor.fit(np.full((2, 64), 0.5), "none", (1, 8, 8), raw_dtype="int")
    with pytest.raises(ConfigError, match=r"data.feature_type='uint8' is not allowed; choose one of \['int', 'float'\]"):
        Preprocessor.fit(np.zeros((2, 64)), "none", (1, 8, 8), raw_dtype="uint8")
