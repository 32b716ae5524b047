"""One sweep trial, and the table of a sweep run's trials.

Both sweep paths call `run_trial`: Hydra's multirun (any launcher: basic,
joblib) through `maas.sweep.hydra_task`, and the Dask flow (flows/sweep.py)
as a Prefect task. A trial never raises: it writes `trial.json` in its folder,
ok or failed, so one bad setting doesn't end a sweep and the record says why.
"""

from __future__ import annotations

import hashlib
import math
import os
import traceback
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from maas import io

RECORD = "trial.json"
RESULTS = "results"  # results.json and results.md in the sweep run's folder


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity mask
        return os.cpu_count() or 1


def fingerprint(stage_name: str, cfg: DictConfig) -> str:
    """What decides a trial's result: its stage and its resolved config (output paths included)."""
    return hashlib.sha256(f"{stage_name}\n{OmegaConf.to_yaml(cfg, resolve=True)}".encode()).hexdigest()


def run_trial(stage_name: str, number: int, overrides: Sequence[str], trial_dir: str | Path,
              cfg: DictConfig | None = None, threads: int | None = None) -> dict:
    """Run `stage_name` on one trial's config and record the outcome in `trial_dir/trial.json`.

    `cfg` is the config Hydra composed for the trial (Hydra path); without it the
    trial composes conf/ with `overrides` (Dask path). Either way the same checks
    run as for `maas compose`. A trial whose record says ok for the same config is
    not run again. `threads` caps torch's threads when trials share a machine.
    """
    from maas import registry
    from maas.config import checked, compose
    from maas.run_config import redirect_outputs

    trial_dir = Path(trial_dir)
    record = {"number": number, "overrides": list(overrides), "dir": str(trial_dir), "status": "failed",
              "error": None, "objective": None, "summary": None, "torch_threads": threads}
    try:
        stage = registry.get(stage_name)
        cfg = checked(cfg) if cfg is not None else compose(overrides)
        redirect_outputs(cfg, [stage], trial_dir)  # inputs stay the pipeline's
        record["config_sha256"] = fingerprint(stage_name, cfg)
        done = previous(trial_dir, record["config_sha256"])
        if done is not None:
            print(f"[maas] sweep trial {number}: finished before with the same config; skipped", flush=True)
            return done
        if threads:
            import torch

            torch.set_num_threads(threads)
        print(f"[maas] sweep trial {number}: {' '.join(overrides)}", flush=True)
        summary = stage.run(cfg)
        value = summary.get(stage.objective) if stage.objective else None
        record.update(status="ok", summary=summary, objective=value)
    except Exception as e:  # any failure is this trial's result, not the sweep's end
        from maas.errors import MaasError

        record["error"] = str(e) if isinstance(e, MaasError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, MaasError):
            record["traceback"] = traceback.format_exc()
        print(f"[maas] sweep trial {number}: FAILED: {record['error']}", flush=True)
    io.write_json(trial_dir / RECORD, record)
    return record


def previous(trial_dir: Path, config_sha256: str) -> dict | None:
    path = trial_dir / RECORD
    if not path.exists():
        return None
    try:
        old = io.read_json(path)
    except (OSError, ValueError):  # a half-written or foreign file: run the trial again
        return None
    ok = isinstance(old, dict) and old.get("status") == "ok" and old.get("config_sha256") == config_sha256
    return old if ok else None


def objective_value(record: dict, direction: str = "minimize") -> float:
    """The number a sweeper optimizes; for a failed trial, the worst one (+inf when minimizing).

    Not NaN: hydra-optuna-sweeper 1.3 tells Optuna a NaN as a complete trial, Optuna
    refuses it, and the sweeper's retry as a failed trial (still with the value) raises,
    ending the whole search. An infinite value is a complete trial ranked last.
    Hydra's basic sweeper ignores the value.
    """
    worst = -math.inf if "max" in str(direction).lower() else math.inf
    value = record.get("objective")
    ok = record["status"] == "ok" and isinstance(value, (int, float)) and not math.isnan(value)
    return float(value) if ok else worst


def summarize(sweep_dir: str | Path, stage_name: str, expected: Sequence[int] = ()) -> dict:
    """Collect the trial records under `sweep_dir` into results.json and results.md.

    `expected`: trial numbers that should have a record; one without (its process died)
    is listed as failed.
    """
    from maas import registry

    sweep_dir = Path(sweep_dir)
    records = {}
    for path in sorted(sweep_dir.glob(f"*/{RECORD}")):
        record = io.read_json(path)
        records[record["number"]] = record
    for n in expected:
        records.setdefault(n, {"number": n, "overrides": [], "dir": str(sweep_dir / str(n)), "status": "failed",
                               "error": "no trial.json: the trial's process ended before writing it",
                               "objective": None, "summary": None})
    trials = [records[n] for n in sorted(records)]
    objective = registry.get(stage_name).objective
    ranked = [t for t in trials if t["status"] == "ok" and isinstance(t.get("objective"), (int, float))
              and math.isfinite(t["objective"])]
    best = min(ranked, key=lambda t: t["objective"]) if ranked else None
    results = {
        "stage": stage_name,
        "sweep_dir": str(sweep_dir),
        "objective": f"{objective} (lower is better)" if objective else None,
        "best": None if best is None else {k: best[k] for k in ("number", "overrides", "objective", "dir")},
        "trials": [{k: t.get(k) for k in ("number", "status", "objective", "overrides", "dir", "error")}
                   for t in trials],
        "failed": [{"number": t["number"], "overrides": t["overrides"], "error": t["error"]}
                   for t in trials if t["status"] != "ok"],
    }
    io.write_json(sweep_dir / f"{RESULTS}.json", results)
    io.write_text(sweep_dir / f"{RESULTS}.md", markdown(results))
    return results


def require_one_ok(results: dict) -> None:
    """A sweep whose every trial failed is a failed sweep: say where the reasons are."""
    from maas.errors import MaasError

    if results["trials"] and len(results["failed"]) == len(results["trials"]):
        raise MaasError(f"every trial failed; see {results['sweep_dir']}/results.md "
                        f"(first error: {results['failed'][0]['error']})")


def markdown(results: dict) -> str:
    best = results["best"]
    lines = [f"# Sweep of stage {results['stage']}: {results['sweep_dir']}", ""]
    if best is None:
        lines.append("No trial finished with a finite objective.")
    else:
        lines.append(f"Best: trial {best['number']}, {results['objective']} = {best['objective']:.6g}, "
                     f"overrides: `{' '.join(best['overrides'])}`")
        lines.append("Promote it into conf/ with `maas sweep promote " + results["sweep_dir"] + "`.")
    lines += ["", "| trial | status | objective | overrides | error |", "| --- | --- | --- | --- | --- |"]
    for t in results["trials"]:
        value = f"{t['objective']:.6g}" if isinstance(t["objective"], (int, float)) else ""
        mark = " (best)" if best is not None and t["number"] == best["number"] else ""
        error = (t["error"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {t['number']}{mark} | {t['status']} | {value} | `{' '.join(t['overrides'])}` | {error} |")
    return "\n".join(lines) + "\n"


def run_trial_as_task(stage_name: str, number: int, overrides: Sequence[str], trial_dir: str,
                      threads: int | None = None):
    """`run_trial` for a Prefect task on a Dask worker: a failed trial ends as a Failed state,
    so the UI shows it, without a traceback that would say no more than its record.

    It lives here, not in flows/sweep.py, because Dask workers import a task's function
    by module name, and a flow file loaded from its path has no importable name.
    """
    from prefect.states import Failed

    record = run_trial(stage_name, number, overrides, trial_dir, threads=threads)
    return record if record["status"] == "ok" else Failed(message=f"trial {number}: {record['error']}")
