"""Sweep one stage through Hydra's own multirun: `maas stage train -m ...`.

Hydra's sweeper expands the overrides (the basic sweeper's cartesian product,
or `hparams_search=optuna`'s Optuna study) and Hydra's launcher runs the trials
(in this process, or `hydra/launcher=joblib` in parallel), so `hydra/sweeper=`,
`hydra/launcher=` and `hydra.sweeper.*` overrides behave as Hydra documents.
Each trial runs `maas.trials.run_trial` in `sweeps/<stage>/<time>/<n>/`; the
sweep run's folder then gets results.json and results.md. flows/sweep.py fans
the same trials out over Dask instead (`expand_overrides` below).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from maas.errors import ConfigError, MaasError
from maas.stages import Stage

SWEEP_ROOT = "sweeps"
_ABSENT = object()


def new_sweep_dir(stage_name: str, root: str | Path = SWEEP_ROOT) -> Path:
    """`root/<stage>/<YYYY-mm-dd_HH-MM-SS>`: one folder per sweep run, never an earlier run's."""
    base = Path(root) / stage_name / time.strftime("%Y-%m-%d_%H-%M-%S")
    folder, n = base, 1
    while folder.exists():  # two sweeps started within one second
        n += 1
        folder = base.with_name(f"{base.name}_{n}")
    return folder


def _parse(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(f"bad sweep overrides {list(overrides)}: {e}") from e


def _is_hydra(key: str) -> bool:
    return key.replace("/", ".").split(".")[0] == "hydra"


def check_sweep(stage: Stage, overrides: Sequence[str]) -> DictConfig:
    """Refuse a sweep that can't work before any trial runs; return the config its fixed overrides compose.

    Names a mistyped key (`model.chanels=1,2`) with a suggestion, a key the chosen
    groups don't have (`model=mlp model.channels=8,16`), a bad fixed value, and a stage
    whose outputs are its own inputs.
    """
    from maas.config import checked
    from maas.params_file import conf_dir
    from maas.known_keys import check_overrides, declared_keys
    from maas.stages import path_keys

    shared = sorted(set(path_keys(stage.outs)) & set(path_keys(stage.deps)))
    if shared:
        # Redirecting such a folder to the trial would hide the stage's own inputs.
        raise ConfigError(f"stage {stage.name} reads and writes {', '.join(shared)}, so it can't be swept on its own; "
                          "sweep an earlier stage (e.g. train) or run the pipeline per setting")
    directory = conf_dir()
    keys = declared_keys(directory)
    check_overrides(overrides, directory, keys)
    parsed = _parse(overrides)
    cfg = _compose_hydra_settings([o.input_line for o in parsed if not o.is_sweep_override()])
    settings = OmegaConf.masked_copy(cfg, ["hydra"])
    with open_dict(cfg):
        del cfg["hydra"]
    base = checked(cfg, directory, keys)
    # What hparams_search declares is swept too: check its keys as if typed on the command line.
    declared = [f"{k}={v}" for k, v in (OmegaConf.select(settings, "hydra.sweeper.params") or {}).items()]
    check_overrides(declared, directory, keys)
    for o in parsed + _parse(declared):
        key = o.key_or_group
        if _is_hydra(key) or (directory / key.replace(".", "/")).is_dir() or o.is_add() or o.is_delete():
            continue
        if OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(f"sweep key {key} is not in the config these overrides compose (model "
                              f"{base.model.get('arch')}, trainer.backend {base.trainer.backend}): the chosen "
                              "group options don't declare it; drop it or sweep their own keys")
    return base


def multirun(stage: Stage, overrides: Sequence[str], sweep_dir: str | Path | None = None) -> dict:
    """Run `maas stage <stage> -m overrides` through Hydra; return the results table."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from maas.params_file import conf_dir
    from maas.trials import require_one_ok, summarize

    check_sweep(stage, overrides)
    parsed = {o.key_or_group: o for o in _parse(overrides)}
    given = parsed.get("hydra.sweep.dir")
    sweep_dir = Path(given.value() if given else sweep_dir or new_sweep_dir(stage.name))
    argv = [*overrides] if given else [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    # Hydra's logging setup (logging.config.dictConfig) closes every handler in the process,
    # other libraries' included (absl's, pytest's capture); maas prints its own progress.
    # `hydra/job_logging=default` on the command line turns it back on.
    argv += [f"{group}=none" for group in ("hydra/job_logging", "hydra/hydra_logging") if group not in parsed]
    print(f"sweep: stage {stage.name} into {sweep_dir}", flush=True)
    failure = None
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name=stage.name):
            GlobalHydra.instance().hydra.multirun(config_name="config", overrides=argv,
                                                  task_function=functools.partial(hydra_task, stage.name))
    except HydraException as e:
        failure = ConfigError(f"bad sweep overrides {list(overrides)}: {e}")
    except ValueError as e:  # Optuna's best_trial when no trial finished
        failure = MaasError(f"the sweep ended early: {e}")
    results = summarize(sweep_dir, stage.name)
    if failure is not None:
        raise failure
    require_one_ok(results)
    return results


def hydra_task(stage_name: str, cfg: DictConfig) -> float:
    """Hydra's task function for one trial (module level: joblib's workers import it by name).

    Returns the stage's objective; for a failed trial the worst value, so Optuna ranks it last.
    """
    from hydra.core.hydra_config import HydraConfig

    from maas.trials import objective_value, run_trial

    hc = HydraConfig.get()
    record = run_trial(stage_name, hc.job.num, list(hc.overrides.task), hc.runtime.output_dir,
                       cfg=cfg, threads=_threads_per_trial(hc))
    return objective_value(record, OmegaConf.select(hc, "sweeper.direction", default="minimize"))


def _threads_per_trial(hc: DictConfig) -> int | None:
    """Torch threads per trial when a launcher runs trials side by side; None: in this process, alone."""
    from maas.trials import cores

    if "joblib" not in str(OmegaConf.select(hc, "launcher._target_", default="")).lower():
        return None
    n = cores()
    jobs = int(hc.launcher.n_jobs)
    parallel = n + 1 + jobs if jobs < 0 else jobs  # joblib's meaning: -1 all cores, -2 all but one
    batch = OmegaConf.select(hc, "sweeper.n_jobs", default=None)  # Optuna asks this many trials at once
    if batch:
        parallel = min(parallel, int(batch))
    return max(1, n // max(1, parallel))


def expand_overrides(overrides: Sequence[str]) -> list[list[str]]:
    """Trials of a grid sweep, as Hydra's basic sweeper makes them (for the Dask flow).

    Sweep parameters declared in an `hparams_search` config (`hydra.sweeper.params`) join
    them; a key given on the command line wins. Hydra's own settings are dropped: Dask
    runs the trials. An Optuna search picks each batch from the results of the last, so
    it can't be fanned out up front: it runs through `maas stage ... -m` instead.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    parsed = _parse(overrides)
    settings = _compose_hydra_settings([o.input_line for o in parsed if not o.is_sweep_override()])
    sweeper = str(OmegaConf.select(settings, "hydra.sweeper._target_"))
    if not sweeper.endswith("BasicSweeper"):
        raise ConfigError(f"the Dask sweep fans out a grid, but these overrides choose the sweeper {sweeper}; "
                          "run an Optuna search with `maas stage train -m hparams_search=optuna "
                          "hydra/launcher=joblib` instead")
    declared = OmegaConf.select(settings, "hydra.sweeper.params") or {}
    given = {o.key_or_group for o in parsed}
    extra = _parse([f"{k}={v}" for k, v in declared.items() if k not in given])
    try:
        batches = BasicSweeper.split_arguments([o for o in parsed + extra if not _is_hydra(o.key_or_group)],
                                               max_batch_size=None)
    except HydraException as e:
        raise ConfigError(f"bad sweep overrides {list(overrides)}: {e}") from e
    return [list(trial) for batch in batches for trial in batch]


def _compose_hydra_settings(fixed: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from maas.params_file import conf_dir

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=fixed, return_hydra_config=True)
    except HydraException as e:
        raise ConfigError(f"bad config or override {fixed}: {e}") from e
