"""params.yaml: where the composed config is written and read, and the project it belongs to.

What a stage process needs to read its config, apart from composing it (maas.config), so that
a stage's declared code (maas.code_deps) doesn't include Hydra composition and every value check.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.errors import ConfigError

PARAMS_FILE = "params.yaml"
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
