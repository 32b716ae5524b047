"""Refuse config keys that nothing reads, and name the key that was probably meant.

Hydra happily composes `+trainer.epoch=5`, and the run then trains the default
number of epochs. The keys maas knows are the ones declared somewhere in
`conf/` (the root config and every option of every group), so a key added by
an override, an experiment or a hand-edited params.yaml must be one of them.
Below a `_target_` (a class a config group would instantiate), any argument
may be added: Hydra's instantiate checks those against the class itself.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from maas.errors import ConfigError

FREE = "*"  # marks a declared mapping whose children are not checked here


def _package(conf: Path, file: Path) -> str | None:
    """The package a group file's keys land in; None for `_global_` files (experiments), which
    only set keys declared elsewhere."""
    head = file.read_text(encoding="utf-8").split("\n", 5)
    if any(line.replace(" ", "") == "#@package_global_" for line in head):
        return None
    return ".".join(file.parent.relative_to(conf).parts)


def _walk(node: Any, prefix: str) -> Iterable[str]:
    if not isinstance(node, dict) or not node:
        yield prefix
        return
    if "_target_" in node:
        yield f"{prefix}.{FREE}"
    yield prefix
    for key, value in node.items():
        if key != "defaults":
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))


def declared_keys(conf: Path) -> set[str]:
    keys: set[str] = set()
    for file in sorted(conf.rglob("*.yaml")):
        package = "" if file.parent == conf else _package(conf, file)
        if package is None:
            continue
        keys.update(k for k in _walk(yaml.safe_load(file.read_text(encoding="utf-8")) or {}, package) if k)
    return keys


def _known(key: str, keys: set[str]) -> bool:
    parts = key.split(".")
    return key in keys or any(".".join(parts[:i] + [FREE]) in keys for i in range(1, len(parts)))


def _unknown(key: str, keys: set[str], where: str) -> ConfigError:
    plain = sorted(k for k in keys if not k.endswith(FREE))
    # `trainer.lr` means trainer.optimizer.lr: a key with the same last name beats a near spelling.
    same_leaf = [k for k in plain if k.split(".")[-1] == key.split(".")[-1] and k.split(".")[0] == key.split(".")[0]]
    match = same_leaf[:1] or difflib.get_close_matches(key, plain, n=1, cutoff=0.6)
    hint = f"; did you mean {match[0]}?" if match else ""
    return ConfigError(f"unknown config key {key} {where}: no file in conf/ declares it, "
                       f"so no stage would read it{hint}")


def check_overrides(overrides: Sequence[str], conf: Path, keys: set[str]) -> None:
    """Name a mistyped key in an override before Hydra suggests adding it with `+`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(f"bad override in {list(overrides)}: {e}") from e
    for o in parsed:
        key = o.key_or_group
        is_group = (conf / key.replace(".", "/")).is_dir()
        # Hydra's own settings (hydra.sweeper.n_trials) and groups (hydra/launcher=joblib) are Hydra's to check.
        if key.replace("/", ".").split(".")[0] == "hydra" or is_group or o.is_delete():
            continue
        if not _known(key, keys):
            raise _unknown(key, keys, f"in override {o.input_line!r}")


def check_config(cfg: Any, keys: set[str], source: str) -> None:
    """Refuse any key of a composed config (a plain or OmegaConf mapping) that conf/ doesn't declare."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)

    def visit(node: dict, prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if not _known(key, keys):
                raise _unknown(key, keys, f"in {source}")
            if isinstance(value, dict) and f"{key}.{FREE}" not in keys:
                visit(value, key)

    visit(cfg, "")
