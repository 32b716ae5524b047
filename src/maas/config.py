"""The one door into Hydra: compose `conf/` into the config params.yaml holds (maas.params_file).

`conf/` is the source of truth. `params.yaml` is its composed, resolved form
(exactly what DVC's own Hydra integration writes on `dvc exp run`), which the
DVC stages read so that DVC can track each stage's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from maas import resolvers
from maas.errors import ConfigError
from maas.params_file import conf_dir


resolvers.register()


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides and resolve interpolations."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from maas.known_keys import check_overrides, declared_keys

    directory = Path(config_dir) if config_dir else conf_dir()
    if not (directory / "config.yaml").exists():
        raise ConfigError(f"no config.yaml in {directory}: run maas from the project root")
    keys = declared_keys(directory)  # read conf/ once for both checks
    check_overrides(overrides, directory, keys)
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except HydraException as e:
        raise ConfigError(f"bad config or override {list(overrides)}: {e}") from e
    return checked(cfg, directory, keys)


def checked(cfg: DictConfig, directory: str | Path | None = None, keys: set[str] | None = None,
            source: str = "the composed config") -> DictConfig:
    """Resolve a config Hydra composed and refuse unknown keys and bad values.

    `compose` ends here, and so does each trial of a Hydra multirun, whose config
    Hydra composes itself: both get the same checks.
    """
    from omegaconf.errors import OmegaConfBaseException

    from maas.config_values import check_image_folder, check_model_fits_data, check_values
    from maas.known_keys import check_config, declared_keys

    check_model_fits_data(cfg)
    check_image_folder(cfg)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad value in {source}: {e}") from e
    check_config(cfg, keys if keys is not None else declared_keys(Path(directory or conf_dir())), source)
    check_values(cfg)
    return cfg


def require_keys(cfg: DictConfig, keys: Sequence[str]) -> None:
    missing = [k for k in keys if OmegaConf.select(cfg, k) is None]
    if missing:
        raise ConfigError(f"config is missing required keys: {', '.join(missing)}")
