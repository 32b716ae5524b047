"""The one door into Hydra: compose `conf/`, render and read `params.yaml`.

`conf/` is the source of truth. `params.yaml` is its composed, resolved form
(exactly what DVC's own Hydra integration writes on `dvc exp run`), which the
DVC stages read so that DVC can track each stage's keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from maas import io, resolvers
from maas.errors import ConfigError

PARAMS_FILE = "params.yaml"


resolvers.register()


# What marks a maas project's root: the config tree and the pipeline DVC runs.
ROOT_MARKERS = ("conf/config.yaml", "dvc.yaml")


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) that holds
    conf/config.yaml and dvc.yaml, as `git` and `dvc` find theirs from any subfolder."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if all((folder / m).is_file() for m in ROOT_MARKERS):
            return folder
    raise ConfigError(f"no maas project at or above {start}: run maas from the project root, "
                      f"the folder that holds {' and '.join(ROOT_MARKERS)}")


def conf_dir() -> Path:
    """`$MAAS_CONF_DIR`, else the project root's `conf/`."""
    if env := os.environ.get("MAAS_CONF_DIR"):
        return Path(env).resolve()
    return project_root() / "conf"


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


def to_params_text(cfg: DictConfig) -> str:
    """The exact text DVC's Hydra integration would write for this config."""
    return OmegaConf.to_yaml(cfg)


def write_params(cfg: DictConfig, path: str | Path = PARAMS_FILE) -> bool:
    """Write `params.yaml` if its content changed; return whether it did."""
    return io.update_text(path, to_params_text(cfg))


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run `maas compose` to write it from conf/")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and OmegaConf's own errors
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} must hold a mapping, got {type(cfg).__name__}")
    from maas.known_keys import check_config, declared_keys

    check_config(cfg, declared_keys(conf_dir()), str(path))
    return cfg


def choice(cfg: DictConfig, key: str, allowed: Sequence[str]) -> str:
    """Read `key` and fail with the key and the allowed values if it is not one of them."""
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {sorted(allowed)}")
    return value


def number(cfg: DictConfig, key: str, low: float, high: float) -> float:
    """Read a numeric `key` and fail with the key and the range if it is not in [low, high]."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key}={value!r} must be a number in [{low:g}, {high:g}]")
    return float(value)


def require_keys(cfg: DictConfig, keys: Sequence[str]) -> None:
    missing = [k for k in keys if OmegaConf.select(cfg, k) is None]
    if missing:
        raise ConfigError(f"config is missing required keys: {', '.join(missing)}")
