"""Check a composed config's values where it is composed, not when `dvc repro` reaches the stage.

`maas compose trainer.epochs=abc` would otherwise write params.yaml and
fail minutes later in train. These are the checks the stages make themselves
before touching their outputs (the same functions), run once more up front;
the model's own arguments are checked when it is built.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from maas.config import choice, number


def check_values(cfg: DictConfig) -> None:
    from maas.backends import BACKENDS
    from maas.backends.base import PRECISIONS, Settings
    from maas.data.preprocessor import KINDS, RAW_DTYPES
    from maas.data.sources import FORMATS, in_memory_rows
    from maas.data.sources import KINDS as DATA_KINDS
    from maas.data.table_preprocessor import encoded_width
    from maas.errors import ConfigError
    from maas.gates import CHAMPION_METRICS
    from maas.serving.settings import ServeSettings
    from maas.stages.compress import settings as compress_settings
    from maas.validation.quarantine import bad_rows_policy

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    choice(cfg, "trainer.backend", BACKENDS)
    choice(cfg, "trainer.precision", PRECISIONS)
    Settings.from_trainer(trainer, seed=cfg.seed)
    lr = OmegaConf.select(cfg, "trainer.optimizer.lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"trainer.optimizer.lr={lr!r} must be a number > 0")
    for key in ("data.split.val_fraction", "data.split.test_fraction"):
        number(cfg, key, 1e-9, 1 - 1e-9)
    choice(cfg, "data.kind", DATA_KINDS)
    choice(cfg, "data.format", FORMATS)
    choice(cfg, "data.scaling", KINDS)
    if cfg.data.kind == "image":
        choice(cfg, "data.feature_type", RAW_DTYPES)
    else:
        encoded_width(OmegaConf.to_container(cfg.data.features, resolve=True))
    number(cfg, "data.chunk_rows", 1, 1e12)
    in_memory_rows(cfg)
    bad_rows_policy(cfg)
    compress_settings(cfg)
    number(cfg, "gates.min_test_accuracy", 0.0, 1.0)
    choice(cfg, "gates.champion.metric", CHAMPION_METRICS)
    number(cfg, "gates.champion.margin", 0.0, 1.0)
    number(cfg, "evaluate.anomaly_noise_std", 0.0, 1e9)
    if OmegaConf.select(cfg, "orchestration.retries") is not None:
        for key in OmegaConf.select(cfg, "orchestration.retries.attempts", default={}) or {}:
            number(cfg, f"orchestration.retries.attempts.{key}", 0, 50)  # Prefect's own cap on retry delays
        number(cfg, "orchestration.retries.delay_s", 0.0, 3600.0)
    ServeSettings.from_mapping(OmegaConf.to_container(cfg.serve, resolve=True))


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
