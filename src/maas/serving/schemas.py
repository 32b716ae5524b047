"""Request and response bodies of the Bento's `/predict`, and the checks pydantic can't express."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


IMAGES = Field(
    description="A batch of raw images as nested lists of pixel values, the same values as in "
    "data/raw: shape [N, H, W] for single-channel images (e.g. [N, 8, 8] for digits) or [N, C, H, W].",
    examples=[[[[0, 0, 5, 13, 9, 1, 0, 0]] * 8]],
)


class PredictResponse(BaseModel):
    classes: list[int] = Field(description="The predicted class of each image, in request order.")
    probabilities: list[list[float]] = Field(description="Per-image class probabilities.")


class BadRequest(ValueError):
    """A request the model can't take; the message names the field and the problem."""


def to_batch(images: list, image_shape: tuple[int, int, int], value_range: tuple[float, float],
             max_batch_size: int) -> np.ndarray:
    """Check a request's images and return them as float32 rows of C*H*W raw values."""
    c, h, w = image_shape
    image = f"{h}x{w}" if c == 1 else f"{c}x{h}x{w}"
    expected = f"[N, {h}, {w}]" if c == 1 else f"[N, {c}, {h}, {w}]"
    if not isinstance(images, list) or not images:
        raise BadRequest(f"images must be a non-empty list of images shaped {expected}")
    if len(images) > max_batch_size:
        raise BadRequest(f"images holds {len(images)} images; at most {max_batch_size} per request")
    try:
        arr = np.asarray(images, dtype=np.float32)
    except (ValueError, TypeError):
        shapes = []
        for i, img in enumerate(images):
            try:
                shapes.append(np.asarray(img, dtype=np.float32).shape)
            except (ValueError, TypeError):
                raise BadRequest(f"images[{i}] is not a numeric {image} array (ragged rows or non-numbers)") from None
        i = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise BadRequest(f"images[{i}] is {'x'.join(map(str, shapes[i]))} but images[0] is "
                         f"{'x'.join(map(str, shapes[0]))}; each image must be {image}") from None
    sent = arr.shape[1:]
    if c == 1 and arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1:] != (c, h, w):
        got = "x".join(map(str, sent)) or "a number"
        raise BadRequest(f"each image must be {image}, got {got} (images shape {[len(arr), *sent]}, "
                         f"expected {expected})")
    bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if bad.any():
        raise BadRequest(f"images[{int(np.argmax(bad))}] holds NaN or infinity")
    lo, hi = value_range
    outside = ((arr < lo) | (arr > hi)).reshape(len(arr), -1).any(axis=1)
    if outside.any():
        raise BadRequest(f"images[{int(np.argmax(outside))}] has pixel values outside [{lo:g}, {hi:g}], "
                         "the raw range the model was trained on")
    return arr.reshape(len(arr), -1)
