"""Check a composed config's values where it is composed, not when `dvc repro` reaches the stage.

`maas compose trainer.epochs=abc` would otherwise write params.yaml and
fail minutes later in train. These are the checks the stages make themselves
before touching their outputs (the same functions), run once more up front;
the model's own arguments are checked when it is built.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from maas.checks import choice, number


def check_values(cfg: DictConfig) -> None:
    from maas.backends import BACKENDS
    from maas.backends.base import PRECISIONS, Settings
    from maas.backends.privacy import check_model as check_private_model
    from maas.data.preprocessor import KINDS, RAW_DTYPES
    from maas.data.profile import profile_bins
    from maas.data.sources import FORMATS, in_memory_rows
    from maas.data.sources import KINDS as DATA_KINDS
    from maas.data.table_preprocessor import encoded_width
    from maas.errors import ConfigError
    from maas.gates import CHAMPION_METRICS
    from maas.serving import encryption
    from maas.monitoring.compare import settings as monitor_settings
    from maas.serving.prediction_log import LogSettings
    from maas.serving.settings import ServeSettings
    from maas.stages.compress import settings as compress_settings
    from maas.validation.declared import check as check_declared_expectations
    from maas.validation.drift import settings as drift_settings
    from maas.validation.quarantine import bad_rows_policy

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    choice(cfg, "trainer.backend", BACKENDS)
    choice(cfg, "trainer.precision", PRECISIONS)
    settings = Settings.from_trainer(trainer, seed=cfg.seed)
    check_private_model(OmegaConf.to_container(cfg.model, resolve=True), settings.privacy)
    lr = OmegaConf.select(cfg, "trainer.optimizer.lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"trainer.optimizer.lr={lr!r} must be a number > 0")
    for key in ("data.split.val_fraction", "data.split.test_fraction"):
        number(cfg, key, 1e-9, 1 - 1e-9)
    name = OmegaConf.select(cfg, "data.name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([a-z0-9_.-]{0,40}[a-z0-9])?", name):
        raise ConfigError(f"data.name={name!r} names the model and the Bento (maas-<name>): use lowercase "
                          "letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    choice(cfg, "data.kind", DATA_KINDS)
    choice(cfg, "data.format", FORMATS)
    choice(cfg, "data.scaling", KINDS)
    if cfg.data.kind == "image":
        choice(cfg, "data.feature_type", RAW_DTYPES)
        _check_image_shape(cfg)
    else:
        encoded_width(OmegaConf.to_container(cfg.data.features, resolve=True))
    number(cfg, "data.chunk_rows", 1, 1e12)
    check_declared_expectations(cfg.expectations, cfg.data)  # names and arguments: GX's, at validate
    in_memory_rows(cfg)
    bad_rows_policy(cfg)
    compress_settings(cfg)
    number(cfg, "gates.min_test_accuracy", 0.0, 1.0)
    choice(cfg, "gates.champion.metric", CHAMPION_METRICS)
    number(cfg, "gates.champion.margin", 0.0, 1.0)
    number(cfg, "evaluate.anomaly_noise_std", 0.0, 1e9)
    drift_settings(cfg)
    profile_bins(cfg)
    if OmegaConf.select(cfg, "orchestration.retries") is not None:
        for key in OmegaConf.select(cfg, "orchestration.retries.attempts", default={}) or {}:
            number(cfg, f"orchestration.retries.attempts.{key}", 0, 50)  # Prefect's own cap on retry delays
        number(cfg, "orchestration.retries.delay_s", 0.0, 3600.0)
    ServeSettings.from_mapping(OmegaConf.to_container(cfg.serve, resolve=True))
    encryption.enabled(cfg)
    if OmegaConf.select(cfg, "monitor") is not None:
        monitor_settings(cfg)
    # The server's environment may override these; here, the config's own values.
    LogSettings.from_mapping(OmegaConf.to_container(cfg.serve, resolve=True).get("prediction_log"), environ={})


# The architectures that take a table's row vector; the others read data.image_shape.
TABLE_ARCHS = ("mlp",)


def check_model_fits_data(cfg: DictConfig) -> None:
    """Before interpolations resolve: a table has no image_shape, so an image model would fail to
    compose with a message about a missing key instead of this one."""
    from maas.errors import ConfigError

    kind, arch = OmegaConf.select(cfg, "data.kind"), OmegaConf.select(cfg, "model.arch")
    if kind == "table" and arch not in TABLE_ARCHS:
        raise ConfigError(f"model.arch={arch!r} takes images, but data.kind=table (data.source="
                          f"{OmegaConf.select(cfg, 'data.source')!r}); use one of {list(TABLE_ARCHS)} (e.g. model=mlp)")


def check_image_folder(cfg: DictConfig) -> None:
    """Before interpolations resolve: data.class_names is read from the folder at data.path, so a
    missing path or folder is named here rather than inside an interpolation error."""
    from maas.data.image_folder import RESIZE_METHODS, class_folders
    from maas.errors import ConfigError

    if OmegaConf.select(cfg, "data.format") != "image_folder":
        return
    if OmegaConf.select(cfg, "data.path") is None:  # `???` in conf/data/image_folder.yaml, or null
        raise ConfigError("data.format=image_folder reads your images from data.path, which is not set: add "
                          "data.path=DIR, the folder with one sub-folder of PNG or JPEG images per class")
    class_folders(OmegaConf.select(cfg, "data.path"))
    choice(cfg, "data.resize", RESIZE_METHODS)


def _check_image_shape(cfg: DictConfig) -> None:
    from maas.errors import ConfigError

    shape = OmegaConf.select(cfg, "data.image_shape")
    if not (OmegaConf.is_list(shape) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ConfigError(f"data.image_shape={shape!r} must be [channels, height, width], three positive integers")
    c, h, w = shape
    if cfg.data.format == "image_folder" and c not in (1, 3):
        raise ConfigError(f"data.image_shape={list(shape)}: an image folder's channels must be 1 (grayscale) or 3 (RGB)")
    if OmegaConf.select(cfg, "model.arch") == "cnn" and (h != w or h % 2):
        raise ConfigError(f"data.image_shape={list(shape)}: model=cnn takes square images of even size "
                          "(height == width, for its 2x2 pool)")
