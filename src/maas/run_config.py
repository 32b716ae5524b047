"""Which config a run uses, and where a one-off run writes.

`params.yaml` is the project's composed config: `dvc repro` reads it, and so do
`maas stage NAME` and `maas pipeline` when given no overrides. Overrides that
change a key some stage reads make a one-off run, and a one-off run writes under
`runs/<id>/` rather than over the DVC-tracked outputs, so `dvc status` stays
clean. Two ways to say otherwise: overrides that set `paths.*` themselves (the
run writes where they say), or `replace=True` (the run writes the tracked
outputs, and says loudly that they no longer match params.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.stages import Stage, expand, path_keys
from maas.registry import all_stages

RUNS_ROOT = "runs"


@dataclass(frozen=True)
class RunConfig:
    cfg: DictConfig
    tracked: bool                  # params.yaml's config on the tracked paths: dvc.lock may record the outputs
    changed: tuple[str, ...] = ()  # keys (that some stage reads) where cfg differs from params.yaml
    out_dir: Path | None = None    # where a one-off run writes


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differences(a: DictConfig, b: DictConfig) -> list[str]:
    """Keys some stage reads whose values differ between two composed configs."""
    reads = tuple({p for s in all_stages() for p in s.params} | {"paths"})
    fa, fb = (flatten(OmegaConf.to_container(c, resolve=True)) for c in (a, b))
    return sorted(k for k in fa.keys() | fb.keys()
                  if fa.get(k) != fb.get(k) and any(k == p or k.startswith(p + ".") for p in reads))


def choose(stages: Sequence[Stage], overrides: Sequence[str], replace: bool = False) -> RunConfig:
    """The config for running `stages` with `overrides` (see the module doc), printing what it chose."""
    from maas.config import compose
    from maas.params_file import PARAMS_FILE, load_params

    tracked = load_params(PARAMS_FILE)
    if not overrides:
        _note_stale(tracked)
        return RunConfig(tracked, tracked=True)
    cfg = compose(overrides)
    changed = differences(tracked, cfg)
    if not changed:
        return RunConfig(tracked, tracked=True)
    listed = ", ".join(changed)
    if any(k.startswith("paths.") for k in changed):
        return RunConfig(cfg, tracked=False, changed=tuple(changed))  # the overrides say where outputs go
    if replace:
        print(f"[maas] WARNING: replacing the DVC-tracked outputs of {_names(stages)} with a config that differs "
              f"from params.yaml in {listed}; `dvc status` will report them changed until `maas compose` "
              "writes the same overrides (or `dvc checkout` restores them)", flush=True)
        return RunConfig(cfg, tracked=False, changed=tuple(changed))
    out_dir = Path(RUNS_ROOT) / _run_id(cfg, changed)
    redirect_outputs(cfg, stages, out_dir)
    print(f"[maas] one-off run: the config differs from params.yaml in {listed}, so {_names(stages)} write(s) "
          f"under {out_dir}/ and the DVC-tracked outputs stay as they are. `maas compose {' '.join(overrides)}` "
          "makes it the project's config; --replace writes over the tracked outputs instead.", flush=True)
    return RunConfig(cfg, tracked=False, changed=tuple(changed), out_dir=out_dir)


def redirect_outputs(cfg: DictConfig, stages: Sequence[Stage], out_dir: Path) -> None:
    """Point every output path of `stages` into `out_dir`. An input another of `stages` doesn't write
    stays the tracked one, unless an earlier one-off run with the same config left it in `out_dir`
    (so `maas stage train X` then `maas stage evaluate X` evaluates the one-off model)."""
    tracked = OmegaConf.create(OmegaConf.to_container(cfg))
    written = {k for s in stages for k in path_keys(s.outs)}
    read = {k for s in stages for k in path_keys(s.deps)} - written
    for key in sorted(written | read):
        target = out_dir / Path(OmegaConf.select(cfg, key)).name
        if key in written or target.exists():
            OmegaConf.update(cfg, key, str(target))
    _bring_inputs_from_shared_folders(cfg, tracked, stages, written)


def _bring_inputs_from_shared_folders(cfg: DictConfig, tracked: DictConfig, stages: Sequence[Stage],
                                      written: set[str]) -> None:
    """package reads reports/metrics.json and writes reports/model_card.md: one folder, now moved.
    An input file there that no earlier stage of this run writes, and no earlier one-off run left,
    is copied in from the tracked folder, as the rule above reads any other input."""
    import shutil

    made: set[str] = set()
    for stage in stages:
        for dep in stage.deps:
            if dep in made or not set(path_keys([dep])) & written:
                continue
            here, there = Path(expand(dep, cfg)), Path(expand(dep, tracked))
            if here != there and not here.exists() and there.exists():
                here.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if there.is_dir() else shutil.copy2)(there, here)
        made.update(stage.outs)


def _run_id(cfg: DictConfig, changed: Sequence[str]) -> str:
    values = {k: OmegaConf.select(cfg, k) for k in changed}
    values = {k: OmegaConf.to_container(v) if isinstance(v, DictConfig) else v for k, v in values.items()}
    return io.json_sha256(values)[:10]


def _names(stages: Sequence[Stage]) -> str:
    return "the pipeline" if len(stages) == len(all_stages()) else ", ".join(s.name for s in stages)


def _note_stale(tracked: DictConfig) -> None:
    """params.yaml is what runs; say so when conf/ has moved on since it was written."""
    from maas.config import compose

    changed = differences(tracked, compose())
    if changed:
        print(f"[maas] note: params.yaml differs from conf/ in {', '.join(changed[:5])}"
              f"{' ...' if len(changed) > 5 else ''}; this run uses params.yaml, as `dvc repro` does "
              "(`maas compose` writes conf/ to it)", flush=True)
