"""Seeded train/val/test splits: stratified over the labels in memory, or hashed per row for big tables."""

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

    check_fractions(val_fraction, test_fraction)
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


TRAIN, VAL, TEST = 0, 1, 2  # what `hashed_split` assigns a row to


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"data.split fractions must be in (0, 1) and sum below 1, got val={val_fraction}, test={test_fraction}"
        )


def hashed_split(rows: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """TRAIN, VAL or TEST per row, from a seeded hash of its row number alone.

    A table too large for memory is split this way chunk by chunk: no pass over the labels
    first and no memory per row, and a row keeps its part when rows are appended. It is not
    stratified; each class lands in each part in the declared shares up to sampling noise
    (for n rows of a class, about sqrt(n) rows)."""
    check_fractions(val_fraction, test_fraction)
    # splitmix64 of (row + seed * golden ratio): uniform, and independent of the row order
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64(seed & (2**64 - 1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    u = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    out = np.full(len(u), TRAIN, dtype=np.int8)
    out[u < test_fraction + val_fraction] = VAL
    out[u < test_fraction] = TEST
    return out
