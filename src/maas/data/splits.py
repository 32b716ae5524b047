"""Stratified, seeded train/val/test split."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from maas.errors import ConfigError, DataValidationError

# Each class needs a row in each of the three parts to be split stratified.
MIN_PER_CLASS = 3


class Split(NamedTuple):
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Indices for three disjoint, class-balanced parts; the same seed gives the same split."""
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"data.split fractions must be in (0, 1) and sum below 1, got val={val_fraction}, test={test_fraction}"
        )
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < MIN_PER_CLASS:
        raise DataValidationError(f"class {classes[counts.argmin()].item()!r} has only {counts.min()} row(s); "
                                  f"a stratified train/val/test split needs at least {MIN_PER_CLASS} per class")
    idx = np.arange(len(labels))
    try:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
        val_of_rest = val_fraction / (1 - test_fraction)
        train, val = train_test_split(rest, test_size=val_of_rest, stratify=labels[rest], random_state=seed)
    except ValueError as e:  # e.g. a test part smaller than the number of classes
        raise DataValidationError(f"cannot split {len(labels)} rows stratified by class: {e}") from e
    return Split(np.sort(train), np.sort(val), np.sort(test))
