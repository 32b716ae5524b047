"""Orchestration overhead: the Prefect flow against the same six stage functions in a plain loop.

    .venv/bin/python bench/orchestration.py [--rounds 2] [overrides ...]

Needs the raw data (`make run`, or `maas data export`). Starts one Prefect server
(SQLite, in a temp PREFECT_HOME) and points PREFECT_API_URL at it for both
contenders, so each pays for an idle server beside it and only the flow talks to it.
Both run the default config (plus any overrides) with every output path in a temp
folder, in one process, alternating per round (the order flips each round):

  plain   compose the config, then `stage.run(cfg)` for the six stages in a loop
  flow    flows/pipeline.py's `pipeline(overrides)`: the flow run, its config artifact,
          one task run per stage, prints sent to the server as logs

Outputs set by `paths.*` make both a run that writes where it is told: neither
checks nor records dvc.lock, so the difference is Prefect's. Reported: wall time
of each (median over rounds) and flow/plain.

A whole pipeline takes minutes and the machine is shared, so its difference is
within the noise. The overhead itself is measured apart, with no stage work:
flow runs of the same `stage_task` wrapper over six stage records whose run
returns at once, against a flow run with no task (`--overhead-rounds` each,
alternating): per_task_ms is (six-task flow - empty flow) / 6, flow_run_ms the
empty flow run (creating it, its states, its heartbeat thread, its log flush).
The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH_KEYS = ("validated", "processed", "trained", "compressed", "reports", "bento", "checkpoints")


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:  # a free port, released for the server to take
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"the Prefect server did not answer in 120 s; see {home / 'server.log'}")


def overhead(rounds: int) -> tuple[float, float]:
    """Prefect's own cost, without stage work: (ms per task run, ms per flow run)."""
    from prefect import flow

    from maas.stages import Stage

    stage_task = runpy.run_path(str(ROOT / "flows" / "pipeline.py"))["stage_task"]
    tasks = [stage_task(Stage(f"noop{i}", lambda cfg: {}, (), (), ()), None) for i in range(6)]

    @flow(name="bench-six-tasks", log_prints=True)
    def six() -> None:
        for t in tasks:
            t({}, return_state=True)

    @flow(name="bench-no-task", log_prints=True)
    def empty() -> None:
        pass

    times: dict[str, list[float]] = {"six": [], "empty": []}
    for r in range(rounds + 1):  # the first round warms up
        for name, fn in (("six", six), ("empty", empty))[:: 1 if r % 2 else -1]:
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    six_s, empty_s = (statistics.median(times[k]) for k in ("six", "empty"))
    print(f"overhead: empty flow run {empty_s * 1000:.0f} ms, six no-op tasks {six_s * 1000:.0f} ms "
          f"(medians of {rounds})", flush=True)
    return round((six_s - empty_s) / len(tasks) * 1000, 1), round(empty_s * 1000, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--overhead-rounds", type=int, default=10)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. trainer.epochs=5")
    args = p.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    work = Path(tempfile.mkdtemp(prefix="maas-bench-orch-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    (work / "prefect").mkdir()
    server, url = start_server(work / "prefect")
    os.environ["PREFECT_API_URL"] = url
    try:
        from maas.config import compose
        from maas.registry import all_stages

        pipeline = runpy.run_path(str(ROOT / "flows" / "pipeline.py"))["pipeline"]

        def overrides(name: str) -> list[str]:
            return [*args.overrides, *(f"paths.{k}={work / name / k}" for k in PATH_KEYS)]

        def plain() -> None:
            cfg = compose(overrides("plain"))
            for stage in all_stages():
                stage.run(cfg)

        def flow() -> None:
            state = pipeline(overrides=overrides("flow"), return_state=True)
            if not state.is_completed():
                raise SystemExit(f"the flow run ended {state.name}: {state.message}")

        per_task_ms, flow_run_ms = overhead(args.overhead_rounds)
        times: dict[str, list[float]] = {"plain": [], "flow": []}
        contenders = {"plain": plain, "flow": flow}
        flow()  # warm-up: imports, the first flow run's client setup, GX and torch first calls
        for r in range(args.rounds):
            order = ["plain", "flow"] if r % 2 == 0 else ["flow", "plain"]
            for name in order:
                t0 = time.perf_counter()
                contenders[name]()
                times[name].append(time.perf_counter() - t0)
                print(f"round {r + 1}/{args.rounds}: {name} {times[name][-1]:.2f} s", flush=True)
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # the flow's last logs, before the server goes
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    n_tasks = len(all_stages())
    figures = {"plain_s": round(med["plain"], 2), "flow_s": round(med["flow"], 2),
               "flow_vs_plain": round(med["flow"] / med["plain"], 4),
               "per_task_ms": per_task_ms, "flow_run_ms": flow_run_ms,
               "overhead_share": round((flow_run_ms + n_tasks * per_task_ms) / 1000 / med["plain"], 4),
               "rounds": args.rounds, "overrides": args.overrides}
    print(f"\nplain loop {med['plain']:.2f} s, flow {med['flow']:.2f} s (medians of {args.rounds}): "
          f"flow/plain {figures['flow_vs_plain']:.3f}; measured apart: {per_task_ms:.0f} ms per task run, "
          f"{flow_run_ms:.0f} ms per flow run = {figures['overhead_share']:.1%} of the plain pipeline")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
