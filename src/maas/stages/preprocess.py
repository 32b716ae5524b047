"""preprocess: stratified seeded split, scaling fitted on train only.

Writes train/val/test.npz (model-ready float32 images and int64 labels) and
preprocessor.json, which the Bento applies to raw requests.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.data.preprocessor import Preprocessor
from maas.data.sources import raw_file, read_raw, to_arrays
from maas.data.splits import stratified_split
from maas.errors import ArtifactError
from maas.stages import Stage, stage_entry
from maas.stages.validate import RESULT_FILE

PREPROCESSOR_FILE = "preprocessor.json"
SPLITS = ("train", "val", "test")


def check_validated(cfg: DictConfig) -> None:
    """Refuse raw data that `validate` did not pass as it is now."""
    result = io.read_json(io.require(Path(cfg.paths.validated) / RESULT_FILE, "validation result"))
    current = io.file_md5(raw_file(cfg))
    if not result.get("success") or result.get("data_md5") != current:
        raise ArtifactError(
            f"{raw_file(cfg)} changed since it was validated (md5 {current} vs {result.get('data_md5')}): "
            "run `maas stage validate` first"
        )


@stage_entry("preprocess")
def run(cfg: DictConfig) -> dict:
    check_validated(cfg)
    features, labels = to_arrays(read_raw(cfg), cfg.data)
    split = stratified_split(labels, val_fraction=cfg.data.split.val_fraction,
                             test_fraction=cfg.data.split.test_fraction, seed=cfg.seed)
    pre = Preprocessor.fit(features[split.train], cfg.data.scaling, cfg.data.image_shape,
                           value_range=(cfg.expectations.feature_min, cfg.expectations.feature_max),
                           raw_dtype=cfg.data.feature_type)
    with io.atomic_dir(cfg.paths.processed) as out:
        for name, idx in zip(SPLITS, split):
            io.write_npz(out / f"{name}.npz", x=pre.transform(features[idx]), y=labels[idx], index=idx)
        pre.save(out / PREPROCESSOR_FILE)
    sizes = {name: len(idx) for name, idx in zip(SPLITS, split)}
    print(f"preprocess: split {sizes}, scaling={pre.kind}", flush=True)
    return {"sizes": sizes, "scaling": pre.kind}


def load_split(cfg: DictConfig, name: str) -> tuple:
    blob = io.read_npz(io.require(Path(cfg.paths.processed) / f"{name}.npz", f"{name} split"))
    return blob["x"], blob["y"]


STAGE = Stage(
    name="preprocess",
    run=run,
    deps=("{paths.raw}", "{paths.validated}/" + RESULT_FILE),
    outs=("{paths.processed}",),
    params=("seed", "data", "expectations.feature_min", "expectations.feature_max"),
    code=("src/maas/stages/preprocess.py", "src/maas/data"),
)
