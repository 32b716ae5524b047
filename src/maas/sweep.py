"""Hydra multirun for a single stage: expand `-m` overrides into trials.

Each trial composes conf/ with its overrides and writes the stage's outputs
under `sweeps/<stage>/<n>/` instead of the DVC-tracked paths, so a sweep never
clobbers the pipeline's results. Inputs still come from the pipeline's paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from maas import io
from maas.config import compose
from maas.stages import Stage

SWEEP_ROOT = "sweeps"


def expand_overrides(overrides: Sequence[str]) -> list[list[str]]:
    """Cartesian product of sweep overrides (`a=1,2 b=x,y`), as Hydra's basic sweeper makes it.

    Sweep parameters declared in an `hparams_search` config (`hydra.sweeper.params`) join them;
    a key given on the command line wins over the declared one.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from maas.config import conf_dir
    from maas.errors import ConfigError

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(list(overrides))
        # Compose with the fixed overrides only, to read what hparams_search declares.
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            hydra_cfg = hydra_compose(config_name="config", overrides=fixed, return_hydra_config=True)
        declared = OmegaConf.select(hydra_cfg, "hydra.sweeper.params") or {}
        given = {o.key_or_group for o in parsed}
        extra = parser.parse_overrides([f"{k}={v}" for k, v in declared.items() if k not in given])
        batches = BasicSweeper.split_arguments(parsed + extra, max_batch_size=None)
    except HydraException as e:
        raise ConfigError(f"bad sweep overrides {list(overrides)}: {e}") from e
    return [list(trial) for batch in batches for trial in batch]


def run_sweep(stage: Stage, overrides: Sequence[str], root: str | Path = SWEEP_ROOT) -> list[dict]:
    shared = sorted(set(_path_keys(stage.outs)) & set(_path_keys(stage.deps)))
    if shared:
        from maas.errors import ConfigError

        # Redirecting such a folder to the trial would hide the stage's own inputs.
        raise ConfigError(f"stage {stage.name} reads and writes {', '.join(shared)}, so it can't be swept on its own; "
                          "sweep an earlier stage (e.g. train) or run the pipeline per setting")
    trials = expand_overrides(overrides)
    print(f"sweep: {len(trials)} trials of stage {stage.name}", flush=True)
    results = []
    for i, trial in enumerate(trials):
        out = Path(root) / stage.name / str(i)
        cfg = compose(trial)
        # Outputs go to the trial's folder; inputs stay where the pipeline put them.
        for key in _path_keys(stage.outs):
            OmegaConf.update(cfg, key, str(out / Path(OmegaConf.select(cfg, key)).name))
        print(f"sweep: trial {i + 1}/{len(trials)}: {' '.join(trial)}", flush=True)
        summary = stage.run(cfg)
        results.append({"trial": i, "overrides": trial, "dir": str(out), **summary})
        io.write_json(Path(root) / stage.name / "results.json", results)
    return results


def _path_keys(templates: Sequence[str]) -> list[str]:
    import re

    keys = []
    for template in templates:
        keys += re.findall(r"\{(paths\.[a-z_]+)\}", template)
    return sorted(set(keys))
