"""A maas sweep as a Prefect flow: trials fan out over Dask (deployment `maas-sweep`).

    python flows/sweep.py model.channels=16,32,64 trainer.epochs=10,20      # LocalCluster
    python flows/sweep.py --dask-address tcp://scheduler:8786 hparams_search=cnn_width
    python flows/sweep.py --sweep-dir sweeps/train/grid1 model.channels=16,32   # again: skips finished trials

The overrides are `maas stage train -m`'s: Hydra's basic sweeper expands them
(plus what an `hparams_search` config declares) into trials, and each trial is
one Prefect task running `maas.trials.run_trial` (the Hydra path's function) on
a Dask worker: a `LocalCluster` of `orchestration.sweep.n_workers` processes,
or the scheduler at `--dask-address` / `orchestration.sweep.dask_address`.
A remote cluster's workers need maas installed and the pipeline's inputs
(data/processed) at the same path, and they share the sweep folder with this
process (a shared filesystem). A failed trial fails its task, not the flow; the
sweep folder gets the same results.json/.md as `maas stage train -m`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Failed

from maas import registry
from maas.errors import MaasError
from maas.sweep import check_sweep, expand_overrides, new_sweep_dir
from maas.trials import cores, require_one_ok, run_trial_as_task, summarize

# The trial already writes its own record; Prefect's result cache would only go stale.
trial = task(run_trial_as_task, name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE, retries=0,
             log_prints=True)


@flow(name="maas-sweep-trials", log_prints=True)
def run_trials(stage: str, trials: list[list[str]], sweep_dir: str, threads: int | None) -> None:
    """Submit every trial to the flow's task runner and wait for all of them."""
    futures = [trial.submit(stage, n, overrides, str(Path(sweep_dir) / str(n)), threads)
               for n, overrides in enumerate(trials)]
    wait(futures)


def this_runs_api() -> str:
    """The API this flow run reports to. Without PREFECT_API_URL that is a temporary server, and
    worker processes that weren't told would each start their own and report their trials there."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


@flow(name="maas-sweep", log_prints=True)
def sweep(stage: str = "train", overrides: list[str] | None = None, dask_address: str | None = None,
          sweep_dir: str | None = None) -> dict:
    """Expand `overrides` into trials of `stage` and run them in parallel on Dask."""
    from prefect_dask import DaskTaskRunner

    overrides = list(overrides or [])
    try:
        base = check_sweep(registry.get(stage), overrides)
        trials = expand_overrides(overrides)
    except MaasError as e:  # the message names the key; a traceback would not add to it
        return Failed(message=str(e))
    folder = Path(sweep_dir) if sweep_dir else new_sweep_dir(stage)
    settings = base.orchestration.sweep
    address = dask_address or settings.dask_address
    if address:
        # Remote workers: their own cores and threads are the cluster's business.
        runner, threads = DaskTaskRunner(address=address), None
    else:
        n = int(settings.n_workers)
        # One trial per worker process, each with its share of the cores (not every core each).
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": ":0",  # any free port
                                                "env": {"PREFECT_API_URL": this_runs_api()}})
        threads = max(1, cores() // n)
    print(f"sweep: {len(trials)} trials of stage {stage} into {folder} on "
          f"{address or f'a LocalCluster of {n} workers'}", flush=True)
    run_trials.with_options(task_runner=runner)(stage, trials, str(folder), threads)
    results = summarize(folder, stage, expected=range(len(trials)))
    try:
        require_one_ok(results)
    except MaasError as e:
        return Failed(message=str(e))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flows/sweep.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra sweep overrides, e.g. model.channels=16,32")
    p.add_argument("--stage", default="train")
    p.add_argument("--dask-address", help="a running Dask scheduler; default: orchestration.sweep.dask_address, "
                                          "else a LocalCluster")
    p.add_argument("--sweep-dir", help="default: sweeps/<stage>/<time>; reuse one to skip finished trials")
    args = p.parse_intermixed_args(argv)
    state = sweep(stage=args.stage, overrides=args.overrides, dask_address=args.dask_address,
                  sweep_dir=args.sweep_dir, return_state=True)
    if not state.is_completed():
        print(f"sweep: error: {state.message}", file=sys.stderr)
        return 2
    print(json.dumps(state.result(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
