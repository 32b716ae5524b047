"""preprocess: stratified seeded split, preprocessing fitted on train only.

Writes train/val/test.npz (model-ready float32 inputs and int64 labels) and
preprocessor.json, which the Bento applies to raw requests: pixel scaling for
images, or a table's missing-value fills, one-hot encoding and scaling; and
profile.json, the training rows' raw feature distributions, which package
stores with the model and validate compares new data with (drift).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.data.preprocessor import Preprocessor
from maas.data.profile import PROFILE_FILE, training_profile
from maas.data.sources import labels as label_array
from maas.data.sources import raw_file, raw_md5, read_raw, to_arrays
from maas.data.splits import stratified_split
from maas.errors import ArtifactError, ConfigError
from maas.stages import Stage, stage_entry
from maas.stages.validate import RESULT_FILE

PREPROCESSOR_FILE = "preprocessor.json"
SPLITS = ("train", "val", "test")


def check_validated(cfg: DictConfig) -> None:
    """Refuse raw data that `validate` did not pass as it is now."""
    result = io.read_json(io.require(Path(cfg.paths.validated) / RESULT_FILE, "validation result"))
    current = raw_md5(cfg)
    if not result.get("success") or result.get("data_md5") != current:
        raise ArtifactError(
            f"{raw_file(cfg)} changed since it was validated (md5 {current} vs {result.get('data_md5')}): "
            "run `maas stage validate` first"
        )


@stage_entry("preprocess")
def run(cfg: DictConfig) -> dict:
    check_validated(cfg)
    frame = read_raw(cfg)
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
    if tuple(pre.input_shape) != tuple(cfg.data.input_shape):
        raise ConfigError(f"data.input_shape={list(cfg.data.input_shape)} but the preprocessed rows are shaped "
                          f"{list(pre.input_shape)}")
    with io.atomic_dir(cfg.paths.processed) as out:
        for name, idx in zip(SPLITS, split):
            io.write_npz(out / f"{name}.npz", x=inputs(idx), y=labels[idx], index=idx)
        pre.save(out / PREPROCESSOR_FILE)
        io.write_json(out / PROFILE_FILE, training_profile(frame.iloc[split.train], cfg))  # what drift compares with
    sizes = {name: len(idx) for name, idx in zip(SPLITS, split)}
    print(f"preprocess: split {sizes}, scaling={pre.kind}", flush=True)
    return {"sizes": sizes, "scaling": pre.kind}


def _split(cfg: DictConfig, labels):
    return stratified_split(labels, val_fraction=cfg.data.split.val_fraction,
                            test_fraction=cfg.data.split.test_fraction, seed=cfg.seed)


def load_split(cfg: DictConfig, name: str) -> tuple:
    blob = io.read_npz(io.require(Path(cfg.paths.processed) / f"{name}.npz", f"{name} split"))
    return blob["x"], blob["y"]


STAGE = Stage(
    name="preprocess",
    run=run,
    deps=("{data.path}", "{paths.validated}/" + RESULT_FILE),
    outs=("{paths.processed}",),
    params=("seed", "data", "drift.bins"),
    code=("src/maas/stages/preprocess.py", "src/maas/data"),
)
