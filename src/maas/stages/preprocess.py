"""preprocess: seeded train/val/test split, preprocessing fitted on train only.

Writes train/, val/ and test/ (each x.npy, y.npy, index.npy: model-ready
float32 inputs, int64 labels, raw row numbers; maas.data.split_files) and
preprocessor.json, which the Bento applies to raw requests: pixel scaling for
images, or a table's missing-value fills, one-hot encoding and scaling; and
profile.json, the training rows' raw feature distributions, which package
stores with the model and validate compares new data with (drift).

Only the rows validate passed are used: with `data.on_bad_rows=quarantine`,
the rows in the quarantine file are left out. A table of up to
`data.in_memory_rows` rows (and any image data) is split stratified in memory;
a larger table streams in `data.chunk_rows` chunks, twice (fit on the training
rows, then transform and append), split by a seeded hash of each row number,
so memory stays bounded by the chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from maas import io
from maas.data.preprocessor import Preprocessor
from maas.data.profile import PROFILE_FILE, ProfileBuilder, profile_bins, profile_columns
from maas.data.sources import in_memory_rows, iter_raw, raw_file, raw_md5, read_raw, to_arrays
from maas.data.sources import labels as label_array
from maas.data.split_files import SplitWriter, read_split, write_split
from maas.data.splits import TRAIN, hashed_split, stratified_split
from maas.errors import ArtifactError, ConfigError, DataValidationError
from maas.stages import Stage, stage_entry
from maas.stages.validate import RESULT_FILE

PREPROCESSOR_FILE = "preprocessor.json"
SPLITS = ("train", "val", "test")


def check_validated(cfg: DictConfig) -> dict:
    """Refuse raw data that `validate` did not pass as it is now (and a quarantine file changed since);
    return the validation result."""
    result = io.read_json(io.require(Path(cfg.paths.validated) / RESULT_FILE, "validation result"))
    current = raw_md5(cfg)
    if not result.get("success") or result.get("data_md5") != current:
        raise ArtifactError(
            f"{raw_file(cfg)} changed since it was validated (md5 {current} vs {result.get('data_md5')}): "
            "run `maas stage validate` first"
        )
    quarantine = result.get("quarantine")
    if quarantine:
        path = Path(cfg.paths.validated) / quarantine["file"]
        if not path.exists() or io.file_md5(path) != quarantine["md5"]:
            raise ArtifactError(f"{path} is missing or changed since validation: run `maas stage validate` again")
    return result


def held_back(cfg: DictConfig, result: dict) -> np.ndarray:
    """The sorted raw row numbers validate quarantined (none without quarantine)."""
    from maas.validation.quarantine import held_back_rows

    quarantine = result.get("quarantine")
    if not quarantine or not quarantine.get("rows"):
        return np.zeros(0, dtype=np.int64)
    return held_back_rows(Path(cfg.paths.validated) / quarantine["file"])


@stage_entry("preprocess")
def run(cfg: DictConfig) -> dict:
    result = check_validated(cfg)
    skip = held_back(cfg, result)
    # Each is handed every chunk of training rows (raw columns) as the split is made: the place for
    # anything else that learns from the training data, as the preprocessor does.
    on_train: list[Callable[[pd.DataFrame], None]] = []
    profile = ProfileBuilder(profile_columns(cfg.data), profile_bins(cfg),  # what drift compares new data with
                             label_column=cfg.data.label_column)
    on_train.append(profile.update)
    streamed = cfg.data.kind == "table" and int(result.get("rows", 0)) > in_memory_rows(cfg)
    with io.atomic_dir(cfg.paths.processed) as out:
        if streamed:
            pre, sizes = _streamed_table(cfg, skip, out, on_train)
        else:
            pre, sizes = _in_memory(cfg, skip, out, on_train)
        pre.save(out / PREPROCESSOR_FILE)
        io.write_json(out / PROFILE_FILE, profile.result())
    how = "hashed per row, streamed" if streamed else "stratified"
    print(f"preprocess: split {sizes} ({how}{f', {len(skip)} quarantined rows left out' if len(skip) else ''}), "
          f"scaling={pre.kind}", flush=True)
    return {"sizes": sizes, "scaling": pre.kind, "split": "hashed" if streamed else "stratified",
            "quarantined": int(len(skip))}


def _in_memory(cfg: DictConfig, skip: np.ndarray, out: Path, on_train) -> tuple:
    frame = read_raw(cfg)
    if len(skip):
        frame = frame.drop(index=skip)
    rows = frame.index.to_numpy(np.int64)
    if cfg.data.kind == "table":
        from maas.data.table_preprocessor import TablePreprocessor

        labels = label_array(frame, cfg.data)
        split = _split(cfg, labels)
        pre = TablePreprocessor.fit(frame.iloc[split.train], cfg.data.features, cfg.data.scaling,
                                    cfg.data.num_classes)
        inputs = lambda idx: pre.transform(frame.iloc[idx])  # noqa: E731
    else:
        features, labels = to_arrays(frame, cfg.data)
        split = _split(cfg, labels)
        pre = Preprocessor.fit(features[split.train], cfg.data.scaling, cfg.data.image_shape,
                               value_range=tuple(cfg.data.feature_range), raw_dtype=cfg.data.feature_type)
        inputs = lambda idx: pre.transform(features[idx])  # noqa: E731
    for observe in on_train:
        observe(frame.iloc[split.train])
    _check_shape(cfg, pre)
    for name, idx in zip(SPLITS, split):
        write_split(out, name, inputs(idx), labels[idx], rows[idx])
    return pre, {name: len(idx) for name, idx in zip(SPLITS, split)}


def _streamed_table(cfg: DictConfig, skip: np.ndarray, out: Path, on_train) -> tuple:
    from maas.data.table_preprocessor import TablePreprocessor

    def parts():
        """Each chunk of kept rows, with its row numbers and their parts (TRAIN, VAL, TEST)."""
        for chunk in iter_raw(cfg):
            chunk = _without(chunk, skip)
            rows = chunk.index.to_numpy(np.int64)
            yield chunk, rows, hashed_split(rows, val_fraction=cfg.data.split.val_fraction,
                                            test_fraction=cfg.data.split.test_fraction, seed=int(cfg.seed))

    sizes = dict.fromkeys(SPLITS, 0)

    def training_rows():
        for chunk, _, part in parts():
            for code, name in enumerate(SPLITS):
                sizes[name] += int((part == code).sum())
            train = chunk[part == TRAIN]
            for observe in on_train:
                observe(train)
            yield train

    pre = TablePreprocessor.fit(training_rows(), cfg.data.features, cfg.data.scaling, cfg.data.num_classes)
    _check_shape(cfg, pre)
    empty = [name for name, n in sizes.items() if not n]
    if empty:
        raise DataValidationError(f"the hashed split of {sum(sizes.values())} rows left {empty} empty: "
                                  f"raise data.in_memory_rows to split this table stratified in memory")
    writers = {name: SplitWriter(out, name, sizes[name], pre.input_shape) for name in SPLITS}
    try:
        for chunk, rows, part in parts():
            x, y = pre.transform(chunk), label_array(chunk, cfg.data)
            for code, name in enumerate(SPLITS):
                m = part == code
                writers[name].append(x[m], y[m], rows[m])
    finally:
        for w in writers.values():
            w.close()
    return pre, sizes


def _without(chunk: pd.DataFrame, skip: np.ndarray) -> pd.DataFrame:
    """The chunk without the quarantined rows (its index: row numbers, increasing)."""
    if not len(skip) or not len(chunk):
        return chunk
    lo, hi = np.searchsorted(skip, [chunk.index[0], chunk.index[-1] + 1])
    return chunk.drop(index=skip[lo:hi]) if hi > lo else chunk


def _check_shape(cfg: DictConfig, pre) -> None:
    if tuple(pre.input_shape) != tuple(cfg.data.input_shape):
        raise ConfigError(f"data.input_shape={list(cfg.data.input_shape)} but the preprocessed rows are shaped "
                          f"{list(pre.input_shape)}")


def _split(cfg: DictConfig, labels):
    return stratified_split(labels, val_fraction=cfg.data.split.val_fraction,
                            test_fraction=cfg.data.split.test_fraction, seed=cfg.seed)


def load_split(cfg: DictConfig, name: str, mmap: bool = False) -> tuple:
    """(x, y) of split `name`; `mmap` maps the files read-only instead of reading them into memory."""
    blob = read_split(cfg.paths.processed, name, mmap=mmap)
    return blob["x"], blob["y"]


STAGE = Stage(
    name="preprocess",
    run=run,
    deps=("{data.path}", "{paths.validated}/" + RESULT_FILE),
    outs=("{paths.processed}",),
    params=("seed", "data", "drift.bins"),
)
