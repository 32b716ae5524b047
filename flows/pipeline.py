"""The maas pipeline as a Prefect flow: one task per stage, the same `run(cfg)` DVC calls.

    python flows/pipeline.py model.channels=16 trainer.epochs=10
    maas pipeline model.channels=16

Parameters are Hydra override strings (JSON-friendly), composed against conf/;
the composed config is stored as a run artifact, key `composed-config` (the README
says how to read it back). Stages don't retry: a failed validation or training run
is deterministic, and retrying it only hides it.

Prefect's settings for these runs are in prefect.toml at the project root.
"""

from __future__ import annotations

import json
import sys

from omegaconf import OmegaConf
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from maas.config import compose, to_params_text
from maas.errors import ConfigError, MaasError
from maas.stages import Stage, all_stages


def stage_task(stage: Stage):
    def run(cfg: dict) -> dict:
        return stage.run(OmegaConf.create(cfg))

    # Outputs live on disk under fixed paths, so Prefect's result cache would go stale; DVC caches.
    return task(run, name=stage.name, cache_policy=NO_CACHE, retries=0)


@flow(name="maas-pipeline", log_prints=True)
def pipeline(overrides: list[str] | None = None, stages: list[str] | None = None) -> dict:
    """Compose conf/ with `overrides`, then run `stages` (default: all) in pipeline order."""
    names = [s.name for s in all_stages()]
    unknown = sorted(set(stages or ()) - set(names))
    if unknown:
        raise ConfigError(f"no stage named {', '.join(unknown)}; stages are: {', '.join(names)}")
    cfg = compose(overrides or [])
    create_markdown_artifact(key="composed-config", markdown=f"```yaml\n{to_params_text(cfg)}```",
                             description=f"overrides: {overrides or []}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    selected = [s for s in all_stages() if not stages or s.name in stages]
    return {s.name: stage_task(s)(plain) for s in selected}


if __name__ == "__main__":
    try:
        print(json.dumps(pipeline(overrides=sys.argv[1:]), indent=2, default=str))
    except MaasError as e:  # Prefect has logged it with its traceback; a third copy adds nothing
        sys.exit(f"pipeline: error: {e}")
