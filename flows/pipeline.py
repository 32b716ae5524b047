"""The maas pipeline as a Prefect flow: one task per stage, the same `run(cfg)` DVC calls.

    python flows/pipeline.py                      # the project's config, params.yaml, as dvc repro runs it
    python flows/pipeline.py model.channels=16    # a one-off run: outputs under runs/<id>/
    maas pipeline [overrides] [--replace] [--force]

With no overrides the flow runs params.yaml's config and keeps DVC's record: a
stage that dvc.lock says is up to date ends in the `Cached` state without
running, and a stage that runs is recorded in dvc.lock as `dvc repro` would
record it (maas.repro). Overrides that change what a stage reads make a one-off
run that writes under runs/<id>/ (maas.run_config). The composed config is
stored as a run artifact, key `composed-config`.

Retries (conf/orchestration: `orchestration.retries`) apply to transient I/O
errors only; bad data, a failed gate or a bad setting fail on the first attempt,
with the stage's own message as the flow run's. Prefect's settings for these
runs are in prefect.toml at the project root.
"""

from __future__ import annotations

import json
import sys

from omegaconf import OmegaConf
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.tasks import exponential_backoff

from maas import repro, run_config
from maas.params_file import project_root, to_params_text
from maas.errors import MaasError, is_transient
from maas.stages import Stage
from maas.registry import all_stages


def _transient_failure(task, task_run, state) -> bool:
    """Prefect's retry condition: retry only what a later attempt can outlive."""
    try:
        return is_transient(state.result(raise_on_failure=False))
    except Exception:  # a Failed state the task returned itself holds no exception: not transient
        return False


def stage_task(stage: Stage, lock: repro.Lock | None, force: bool = False, retries: int = 0,
               retry_delay_s: float = 0):
    def run(cfg: dict):
        try:
            outcome = repro.run_stage(stage, OmegaConf.create(cfg), lock, force)
        except MaasError as e:
            # Bad data, a failed gate, a bad setting: the stage printed why in one line. A Failed
            # state (not an exception) keeps Prefect from logging a traceback that says nothing more.
            return Failed(message=f"{stage.name}: {e}")
        if outcome.cached:
            return Completed(name="Cached", data=outcome.summary, message="up to date with dvc.lock")
        return outcome.summary

    # Prefect's own result cache stays off: dvc.lock is the record (maas.repro), shared with dvc repro.
    return task(run, name=stage.name, cache_policy=NO_CACHE, retries=retries,
                retry_delay_seconds=exponential_backoff(retry_delay_s)(retries) if retries else 0,
                retry_condition_fn=_transient_failure)


@flow(name="maas-pipeline", log_prints=True)
def pipeline(overrides: list[str] | None = None, stages: list[str] | None = None, replace: bool = False,
             force: bool = False) -> dict:
    """Run `stages` (default: all) in pipeline order on params.yaml, or a one-off config made by `overrides`.

    replace: a one-off config writes over the DVC-tracked outputs instead of under runs/.
    force: run stages that dvc.lock says are up to date.
    """
    names = [s.name for s in all_stages()]
    unknown = sorted(set(stages or ()) - set(names))
    if unknown:
        return Failed(message=f"no stage named {', '.join(unknown)}; stages are: {', '.join(names)}")
    selected = [s for s in all_stages() if not stages or s.name in stages]
    try:
        chosen = run_config.choose(selected, overrides or [], replace=replace)
        lock = repro.Lock.open(project_root()) if chosen.tracked else None
    except MaasError as e:  # one line naming the key or file says it all; a traceback would not add to it
        return Failed(message=str(e))
    cfg = chosen.cfg
    create_markdown_artifact(key="composed-config", markdown=f"```yaml\n{to_params_text(cfg)}```",
                             description=f"overrides: {overrides or []}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    # A params.yaml written before conf/orchestration existed has no retries: none, then.
    delay_s = float(OmegaConf.select(cfg, "orchestration.retries.delay_s", default=0))
    summaries = {}
    for s in selected:
        attempts = int(OmegaConf.select(cfg, f"orchestration.retries.attempts.{s.name}", default=0))
        state = stage_task(s, lock, force, attempts, delay_s)(plain, return_state=True)
        if state.is_failed():
            return Failed(message=state.message)  # the flow run ends with the stage's message; no later stage runs
        summaries[s.name] = state.result()
    return summaries


if __name__ == "__main__":
    state = pipeline(overrides=sys.argv[1:], return_state=True)
    if not state.is_completed():
        sys.exit(f"pipeline: error: {state.message}")
    print(json.dumps(state.result(), indent=2, default=str))
