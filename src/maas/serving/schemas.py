"""Request, response and error bodies of the Bento's `/predict`, and the checks pydantic can't express.

Here the image request, {"images": [...]}, and what every request shares (the body's
parse, the options, the answer, the error); a table's rows are checked in table_requests.py.

The checks are pure functions of the request, so they can run per request
before anything is batched with other requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import reduce
from itertools import chain
from operator import getitem
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# A zero from scikit-learn's digits, as data/raw holds it (8x8 integers 0..16).
EXAMPLE_IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
                 [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                 [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]

IMAGES = Field(
    description="A batch of raw images as nested lists of pixel values of the same type and range as in "
    "data/raw (for digits: JSON integers 0..16): shape [N, H, W] for single-channel images "
    "(e.g. [N, 8, 8] for digits) or [N, C, H, W].",
    examples=[[EXAMPLE_IMAGE]],  # one example value: a batch of one image
)


RETURN_PROBABILITIES = Field(True, description="false: leave out the per-image (or row) probabilities (smaller "
                             "answers).")


class PredictResponse(BaseModel):
    # Lists, never null: BentoML's typed client can't decode a null where its schema has an array.
    classes: list[int] = Field(description="The predicted class of each image (or table row), in request order.")
    probabilities: list[list[float]] = Field(description="Per-image (or row) class probabilities; empty when the "
                                             "request says \"return_probabilities\": false.")
    anomaly_scores: list[float] = Field(description="Per-image (or row) reconstruction error (mean squared, on the "
                                        "preprocessed scale) for models that reconstruct their input "
                                        "(model=autoencoder); higher is less like the training data. Empty for "
                                        "other models.")


@dataclass(frozen=True)
class DocumentedImages:
    """Annotation that makes the OpenAPI document (serialization mode) describe the images exactly:
    nesting, sizes, pixel type and range. The validation-mode schema, which BentoML's own client
    reads to send numpy arrays, keeps BentoML's tensor description."""

    shape: tuple[int, ...]   # one image, without the batch axis: (H, W) or (C, H, W)
    low: float
    high: float
    integer: bool

    def __get_pydantic_json_schema__(self, schema, handler):
        value = handler(schema)
        if handler.mode == "validation":
            return value
        node = {"type": "integer" if self.integer else "number", "minimum": self.low, "maximum": self.high}
        for size in reversed(self.shape):
            node = {"type": "array", "minItems": size, "maxItems": size, "items": node}
        value.update(type="array", minItems=1, items=node)
        return value


class ErrorResponse(BaseModel):
    """The body of every error response: 400 for a request the model can't take, 500 for a server fault."""

    model_config = ConfigDict(extra="forbid")  # documents that `error` is the only field

    error: str = Field(description="What is wrong, naming the field: e.g. `images[0][2][3] is 3.5; pixels must "
                       "be integers in [0, 16] (the raw data's type and range)`.")


class BadRequest(ValueError):
    """A request the model can't take; the message names the field and the problem, `reason`
    says which kind of problem (one of maas.serving.metrics.REASONS, counted on /metrics)."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageSpec:
    """What one request may send: the model's image shape, the raw data's pixel type and range."""

    shape: tuple[int, int, int]  # channels, height, width
    low: float
    high: float
    dtype: str                   # "int" | "float", as the preprocessor recorded it
    max_request_images: int
    field: ClassVar[str] = "images"  # the request's field (a table's spec has "rows": table_requests.TableSpec)
    unit: ClassVar[str] = "images"

    def check(self, images) -> np.ndarray:
        return to_batch(images, self)

    @property
    def types(self) -> frozenset[type]:
        # bool is a subclass of int, and str converts to a number in numpy: both must be named to be refused.
        return frozenset({int}) if self.dtype == "int" else frozenset({int, float})

    @property
    def pixels(self) -> str:
        kind = "integers" if self.dtype == "int" else "finite numbers"
        return f"pixels must be {kind} in [{self.low:g}, {self.high:g}] (the raw data's type and range)"

    @property
    def image(self) -> str:
        c, h, w = self.shape
        return f"{h}x{w}" if c == 1 else f"{c}x{h}x{w}"


@dataclass(frozen=True)
class Checked:
    """A /predict request that passed every check: its rows (images as float32 rows of raw pixels, or a
    table's rows as table_requests.TableSpec.check encodes them), and its options."""

    rows: np.ndarray
    return_probabilities: bool = True


def parse_body(body: bytes, spec) -> Checked:
    """A raw `/predict` body -> its checked rows and options, or BadRequest. `spec` is an ImageSpec (the
    body is {"images": [...]}) or a table_requests.TableSpec ({"rows": [...]})."""
    from pydantic_core import from_json

    field = spec.field
    try:
        # The parser BentoML's JSON serde uses, so a body accepted here parses the same way there.
        payload = from_json(body)
    except ValueError as e:
        raise BadRequest(f'the body is not valid JSON ({e}); send {{"{field}": [...]}}', "not_json") from None
    if not isinstance(payload, dict) or field not in payload:
        raise BadRequest(f'the body must be a JSON object with the field "{field}": {{"{field}": [...]}}', "bad_field")
    if extra := sorted(payload.keys() - {field, "return_probabilities"}):
        raise BadRequest(f'unknown field(s) {", ".join(map(json.dumps, extra))}; the body is '
                         f'{{"{field}": [...], "return_probabilities": true|false (optional)}}', "bad_field")
    return Checked(spec.check(payload[field]), _return_probabilities(payload))


def _return_probabilities(payload: dict) -> bool:
    """The request's return_probabilities (default true), which must be a JSON boolean."""
    value = payload.get("return_probabilities", True)
    if not isinstance(value, bool):
        raise BadRequest(f"return_probabilities is {show(value)}; it must be true or false", "bad_field")
    return value


def to_batch(images, spec: ImageSpec) -> np.ndarray:
    """Check a request's images and return them as float32 rows of C*H*W raw values."""
    _check_count(images, spec)
    try:
        arr = np.asarray(images, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # ragged, not numbers, or an int beyond float
        raise _explain(images, spec) from None
    _check_shape(arr.shape[1:], spec)
    pixel_types = set(map(type, _pixels(images, arr.ndim)))
    # NaN fails both comparisons, so this also refuses NaN and infinities.
    if not pixel_types <= spec.types or not ((arr >= spec.low) & (arr <= spec.high)).all():
        raise _first_bad_pixel(images, arr.shape, spec)
    return arr.reshape(len(arr), -1).astype(np.float32)


def _check_count(images, spec: ImageSpec) -> None:
    if not isinstance(images, list) or not images:
        raise BadRequest(f"images must be a non-empty list of images shaped {_expected(spec)}", "bad_field")
    if len(images) > spec.max_request_images:
        raise BadRequest(f"images holds {len(images)} images; at most {spec.max_request_images} per request",
                         "too_many_images")


def _expected(spec: ImageSpec) -> str:
    c, h, w = spec.shape
    return f"[N, {h}, {w}]" if c == 1 else f"[N, {c}, {h}, {w}]"


def _check_shape(sent: tuple[int, ...], spec: ImageSpec) -> None:
    """`sent` is one image's shape; a single-channel image may come with or without its channel axis."""
    c, h, w = spec.shape
    if sent == (c, h, w) or (c == 1 and sent == (h, w)):
        return
    got = "x".join(map(str, sent)) or "a single value"
    raise BadRequest(f"each image must be {spec.image}, got {got} (expected images shaped {_expected(spec)})", "shape")


def _pixels(images: list, ndim: int):
    """The pixel values of a regular nested list of `ndim` levels, without copying them."""
    return reduce(lambda values, _: chain.from_iterable(values), range(ndim - 1), images)


def _explain(images: list, spec: ImageSpec) -> BadRequest:
    """Name what made the batch unreadable as numbers: a ragged image, mismatched images, or a pixel."""
    shapes = []
    for i, img in enumerate(images):
        try:
            shapes.append(np.shape(img))
        except ValueError:
            return BadRequest(f"images[{i}] is not a regular {spec.image} array (its rows differ in length)", "shape")
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            return BadRequest(f"images[{i}] is {'x'.join(map(str, shape))} but images[0] is "
                              f"{'x'.join(map(str, shapes[0]))}; each image must be {spec.image}", "shape")
    _check_shape(shapes[0], spec)
    return _first_bad_pixel(images, (len(images), *shapes[0]), spec)


def _first_bad_pixel(images: list, shape: tuple[int, ...], spec: ImageSpec) -> BadRequest:
    """Walk the pixels in order (only for a refused request) and name the first wrong one."""
    for index in np.ndindex(*shape):
        value = reduce(getitem, index, images)
        if type(value) not in spec.types or not spec.low <= value <= spec.high:
            return BadRequest(f"images{''.join(f'[{i}]' for i in index)} is {show(value)}; {spec.pixels}", "pixel")
    return BadRequest(f"images are not readable as numbers; {spec.pixels}", "pixel")  # unreachable for JSON input


def show(value) -> str:
    """A value as the client wrote it in JSON, kept short."""
    if type(value) is int and abs(value) > 10**15:
        return f"an integer of {value.bit_length()} bits"  # str() of a huge int is slow, and refused past 4300 digits
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
