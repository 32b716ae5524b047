"""A stage's record (`Stage`), kept next to its `run(cfg) -> dict` in each stage module.

The ordered list of stages is `maas.registry`: it imports every stage, which no stage should do
(each stage's declared code is what it imports, see maas.code_deps).
"""

from __future__ import annotations

import functools
import re
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from maas.errors import ConfigError, MaasError

_KEY = re.compile(r"\{([a-zA-Z0-9_.]+)\}")


def path_keys(templates: tuple[str, ...] | list[str]) -> list[str]:
    """The `paths.*` keys that a stage's deps or outs templates name."""
    return sorted({k for t in templates for k in re.findall(r"\{(paths\.[a-z_]+)\}", t)})


def tracked_config(cfg: DictConfig, keys: tuple[str, ...]) -> dict:
    """The resolved values of `keys` (dotted, as a Stage's params), nested as in the config: what a stage may
    record of its config without making its outputs depend on keys DVC doesn't track for it."""
    out: dict = {}
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return out


def expand(template: str, cfg: DictConfig) -> str:
    """Fill `{paths.processed}`-style placeholders from the config."""

    def value(m: re.Match) -> str:
        v = OmegaConf.select(cfg, m.group(1))
        if v is None:
            raise ConfigError(f"config key {m.group(1)} is missing (needed for {template!r})")
        return str(v)

    return _KEY.sub(value, template)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DictConfig], dict]
    deps: tuple[str, ...]            # files the stage reads (templates over cfg)
    outs: tuple[str, ...]            # files or directories it writes
    params: tuple[str, ...]          # config keys it reads, tracked by DVC
    code: tuple[str, ...] = ()       # its source, so an edit re-runs it (default: what its module imports)
    metrics: tuple[str, ...] = ()    # small JSON files DVC shows with `dvc metrics show`
    plots: tuple[str | dict, ...] = ()  # files, or {plot id: DVC's plot definition} (x, y: {file: column})
    objective: str | None = None     # the summary key a sweep minimizes (Optuna's value, the best trial)


def stage_entry(name: str):
    """Wrap a stage's run: print start and finish, time it, and name the stage in any failure."""

    def wrap(fn: Callable[[DictConfig], dict]) -> Callable[[DictConfig], dict]:
        @functools.wraps(fn)
        def run(cfg: DictConfig) -> dict:
            print(f"[maas] stage {name}: start", flush=True)
            t0 = time.perf_counter()
            try:
                summary = fn(cfg)
            except MaasError as e:
                print(f"[maas] stage {name}: FAILED: {e}", flush=True)
                raise
            except Exception:
                print(f"[maas] stage {name}: FAILED with an unexpected error:\n{traceback.format_exc()}", flush=True)
                raise
            summary = {"stage": name, "seconds": round(time.perf_counter() - t0, 2), **summary}
            print(f"[maas] stage {name}: done in {summary['seconds']}s", flush=True)
            return summary

        return run

    return wrap
