"""`maas sweep promote`: write a sweep's best trial into conf/, so `make run` trains it.

The best trial's overrides become `conf/promoted/best.yaml`, a `_global_`
file that conf/config.yaml's defaults list includes (`optional promoted: best`)
after the groups and before `experiment`: group choices (`model=mlp`) as
`override /model: mlp`, values as nested keys. Command-line overrides and an
experiment still win over it. Paths and the sweep's own settings (hydra,
hparams_search) are not promoted: they say where and how the sweep ran, not
what to train.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from maas import io
from maas.errors import ConfigError, MaasError

PROMOTED = Path("promoted") / "best.yaml"  # inside conf/
NOT_PROMOTED = ("hydra", "paths", "hparams_search")


def latest_sweep(root: str | Path) -> Path:
    """The sweep run folder (`root/<stage>/<time>/`) whose results table was written last."""
    tables = sorted(Path(root).glob("*/*/results.json"), key=lambda p: p.stat().st_mtime)
    if not tables:
        raise MaasError(f"no sweep results under {root}/: run a sweep first (`maas stage train -m ...`)")
    return tables[-1].parent


def promote(sweep_dir: str | Path | None = None, root: str | Path = "sweeps") -> tuple[Path, list[str]]:
    """Write the best trial of `sweep_dir` (default: the newest sweep) to conf/promoted/best.yaml.

    Returns the file and the overrides it holds. Composes conf/ afterwards and puts the old
    file back if any promoted value did not take effect.
    """
    from maas.config import compose
    from maas.params_file import conf_dir

    folder = Path(sweep_dir) if sweep_dir else latest_sweep(root)
    table = io.require(folder / "results.json", "results.json (is this a sweep run's folder?)")
    results = io.read_json(table)
    best = results.get("best")
    if not best:
        raise MaasError(f"no trial in {folder} finished with a finite objective: nothing to promote "
                        f"(see {folder / 'results.md'})")
    overrides = [o for o in best["overrides"] if o.replace("/", ".").split("=")[0].lstrip("+").split(".")[0]
                 not in NOT_PROMOTED]
    groups, values = _split(overrides)
    header = (f"# @package _global_\n"
              f"# Written by `maas sweep promote` from {folder}, trial {best['number']}\n"
              f"# ({results.get('objective')} = {best['objective']}); overrides: {' '.join(best['overrides'])}\n"
              f"# Delete this file to train conf/'s own defaults again.\n")
    doc = ({"defaults": [{f"override /{g}": v} for g, v in groups.items()]} if groups else {}) | values
    path = conf_dir() / PROMOTED
    before = path.read_text(encoding="utf-8") if path.exists() else None
    io.write_text(path, header + (yaml.safe_dump(doc, sort_keys=False) if doc else ""))
    try:
        cfg = compose()
        wrong = [k for k, v in _flat(values).items() if OmegaConf.select(cfg, k) != v]
        if wrong:
            raise ConfigError(f"{', '.join(wrong)} in {path} did not take effect: conf/config.yaml's own "
                              "value wins over promoted ones; change it there instead")
    except Exception:
        if before is None:
            path.unlink()
        else:
            io.write_text(path, before)
        raise
    return path, overrides


def _split(overrides: list[str]) -> tuple[dict[str, str], dict]:
    """Group choices (`model=mlp`) and nested values (`{model: {channels: 16}}`) of Hydra overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from maas.params_file import conf_dir

    groups: dict[str, str] = {}
    values: dict = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group
        if o.is_delete() or o.package:
            raise ConfigError(f"can't promote {o.input_line!r}: write it into conf/ by hand")
        if (conf_dir() / key.replace(".", "/")).is_dir():
            groups[key.replace(".", "/")] = o.value()
            continue
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = o.value()
    return groups, values


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out
