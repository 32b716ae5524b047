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
from prefect.states import Failed

from maas.config import compose, to_params_text
from maas.errors import ConfigError, MaasError
from maas.stages import Stage, all_stages


def stage_task(stage: Stage):
    def run(cfg: dict):
        try:
            return stage.run(OmegaConf.create(cfg))
        except MaasError as e:
            # Bad data, a failed gate, a bad setting: the stage printed why in one line. A Failed
            # state (not an exception) keeps Prefect from logging a traceback that says nothing more.
            return Failed(message=f"{stage.name}: {e}")

    # Outputs live on disk under fixed paths, so Prefect's result cache would go stale; DVC caches.
    return task(run, name=stage.name, cache_policy=NO_CACHE, retries=0)


@flow(name="maas-pipeline", log_prints=True)
def pipeline(overrides: list[str] | None = None, stages: list[str] | None = None) -> dict:
    """Compose conf/ with `overrides`, then run `stages` (default: all) in pipeline order."""
    names = [s.name for s in all_stages()]
    unknown = sorted(set(stages or ()) - set(names))
    if unknown:
        return Failed(message=f"no stage named {', '.join(unknown)}; stages are: {', '.join(names)}")
    try:
        cfg = compose(overrides or [])
    except ConfigError as e:  # one line naming the key says it all; a traceback would not add to it
        return Failed(message=str(e))
    create_markdown_artifact(key="composed-config", markdown=f"```yaml\n{to_params_text(cfg)}```",
                             description=f"overrides: {overrides or []}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    selected = [s for s in all_stages() if not stages or s.name in stages]
    summaries = {}
    for s in selected:
        state = stage_task(s)(plain, return_state=True)
        if state.is_failed():
            return Failed(message=state.message)  # the flow run ends with the stage's message; no later stage runs
        summaries[s.name] = state.result()
    return summaries


if __name__ == "__main__":
    state = pipeline(overrides=sys.argv[1:], return_state=True)
    if not state.is_completed():
        sys.exit(f"pipeline: error: {state.message}")
    print(json.dumps(state.result(), indent=2, default=str))
