"""Serving speed: `bentoml serve` of the maas Bento on loopback, adaptive batching on and off,
beside two ceilings measured in the same run.

    .venv/bin/python bench/serving.py [--bento models/bento] [--quick] [--workers N]
                                      [--on KEY=VALUE ...] [--variant KEY=VALUE[,KEY=VALUE...] ...]

--bento is a folder holding bento.json (the package stage's record; default: paths.bento of
params.yaml, as `make run` leaves it), a bento.json, a .bento archive or a tag in the BentoML
store. A Bento missing from the store (BENTOML_HOME, else ~/bentoml) is imported from its archive
into a temp store, as `maas serve` does. Every request is one digits image (sklearn's copy of the
data set, integers 0..16), the same prepared body {"images": [<8x8>]}, so images/s == requests/s.

Contenders, each its own `bentoml serve` on 127.0.0.1, all started before the first window and
left up, measured in turn at each concurrency (the order rotates, so all see the same load):

  on     the Bento with the batching its serve.json ships (conf/serve: max_batch_size,
         max_latency_ms), passed as MAAS_SERVE_* so it shows; --on changes them
  off    the Bento, MAAS_SERVE_MAX_BATCH_SIZE=1: every request runs alone
  (each --variant: the on settings with the variant's changed; shown, not in the figures)
  noop   bench/noop_service.py: the same body parsed by BentoML into the same typed arguments
         by an async method, a constant answer of the same response model, the same server
         config and workers. Its images/s at concurrency 64 is ceiling (b): what BentoML
         itself allows under the same load as the figure's numerator (the best of its three
         concurrencies would be biased upwards by noise; it is printed too).

Every server gets MAAS_SERVE_WORKERS (--workers, default the Bento's serve.json), and no
MAAS_SERVE_* or MAAS_API_KEYS* of the caller's environment (no keys: every route is open). Ceiling (a) is the raw model in this process before
any server starts: the packaged model loaded with maas.model_files.load + its preprocessor, as
the service loads them, timed on transform + predict of batches of 1..512 images, with torch's
default threads and with one; the best images/s counts.

Load: one aiohttp ClientSession (TCPConnector(limit=concurrency)) and `concurrency` tasks that
each send the next request as soon as the last one is answered, at concurrency 1, 16 and 64.
A warm-up, then a fixed window; a request counts if it is answered 200 inside the window, its
latency from send to the end of its body; other answers are counted as errors. The load
generator runs in this process and shares the machine's cores with the servers: the figures
include that, and the cores each side used during the window (CPU seconds per second, via
psutil) are printed beside them, with images per second of server CPU, which moves less than
wall time when other jobs share the machine.

ready_s is the time from starting `bentoml serve <tag>` to the first 200 from /readyz
(polled every 20 ms), the median over --starts starts (the on and off servers count).

Figures: vs_lower_ceiling = on at concurrency 64 / min(ceiling a, ceiling b), batching_speedup
= on / off at concurrency 64, and ready_s, each printed beside its goal. The last line is one
JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)
BATCH_SIZES = tuple(2**i for i in range(10))  # 1..512, the most images one request may carry
ENV_PREFIX = "MAAS_SERVE_"
OFF = {ENV_PREFIX + "MAX_BATCH_SIZE": "1"}
GOALS = {"vs_lower_ceiling": (">=", 0.8), "batching_speedup": (">=", 2.0), "ready_s": ("<=", 5.0)}


def resolve_bento(arg: str | None) -> tuple[str | None, Path | None]:
    """(tag, archive) of what --bento names; the tag is None for a bare archive (read at import)."""
    if arg is None:
        from maas.params_file import load_params

        arg = str((ROOT / load_params(ROOT / "params.yaml").paths.bento).resolve())
        if not (Path(arg) / "bento.json").exists():
            raise SystemExit(f"no {arg}/bento.json: run `make run`, or pass --bento <folder|archive|tag>")
    path = Path(arg)
    if path.is_dir():
        path = path / "bento.json"
    if path.suffix == ".json" and path.exists():
        info = json.loads(path.read_text())
        return info["bento_tag"], path.parent / info["archive"]
    if path.suffix == ".bento" and path.exists():
        return None, path.resolve()
    if ":" in arg and not path.exists():
        return arg, None
    raise SystemExit(f"--bento {arg}: not a folder with bento.json, a bento.json, a .bento archive or a tag")


def in_store(home: Path, tag: str) -> bool:
    name, _, version = tag.partition(":")
    if version in ("", "latest"):
        latest = home / "bentos" / name / "latest"
        version = latest.read_text().strip() if latest.is_file() else ""
    return bool(version) and (home / "bentos" / name / version / "bento.yaml").is_file()


def open_store(tag: str | None, archive: Path | None) -> tuple[str, Path, bool]:
    """Make the Bento available in a store (importing the archive into a temp one if needed) and point
    BENTOML_HOME at it before bentoml is imported here or in any server; (tag, model directory,
    whether the store is a temp one)."""
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    if tag is None or not in_store(home, tag):
        if archive is None or not archive.exists():
            raise SystemExit(f"{tag} is not in the BentoML store {home} and there is no archive to import")
        os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bench-bentoml-")
        import bentoml

        print(f"importing {archive} into a temp store {os.environ['BENTOML_HOME']}", flush=True)
        tag = str(bentoml.bentos.import_bento(str(archive)).tag)
    else:
        os.environ["BENTOML_HOME"] = str(home)
    import bentoml

    from maas.serving import BENTO_MODEL_SUBDIR

    model_tag = bentoml.bentos.get(tag).info.all_models[0].tag
    return tag, Path(bentoml.models.get(model_tag).path_of(BENTO_MODEL_SUBDIR)), os.environ["BENTOML_HOME"] != str(home)


def model_ceiling(model_dir: Path, images: np.ndarray, seconds: float) -> dict[tuple[int, int], float]:
    """images/s of the packaged model (preprocess + predict, as the service runs it) by (threads, batch size).

    A torch model is timed with 1 thread and with torch's default (what a server worker gets):
    on a busy 2-core machine the default's threads wait for each other on small batches."""
    from maas import model_files
    from maas.data.preprocessor import Preprocessor

    model = model_files.load(model_dir)
    pre = Preprocessor.load(model_dir / "preprocessor.json")
    raw = images.reshape(len(images), -1).astype(np.float32)
    if model.spec["backend"] == "torch":
        import torch

        default = torch.get_num_threads()
        thread_counts, set_threads = sorted({1, default}), torch.set_num_threads
    else:
        default, thread_counts, set_threads = 0, [0], lambda n: None  # 0: the backend's own default
    rates = {}
    for threads in thread_counts:
        set_threads(threads)
        for bs in BATCH_SIZES:
            x = raw[np.arange(bs) % len(raw)]
            model.predictor.predict(pre.transform(x))  # warm-up: first-call allocations for this shape
            n, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds:
                model.predictor.predict(pre.transform(x))
                n += bs
            rates[threads, bs] = n / elapsed
    set_threads(default)
    return rates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `bentoml serve` in its own process group, up once /readyz answers 200."""

    def __init__(self, name: str, target: list[str], env: dict[str, str], logs: Path, cwd: Path = ROOT):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"{name}.log"
        argv = [sys.executable, "-m", "bentoml", "serve", *target, "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.perf_counter()
        with open(self.log, "a") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=True)
        self.ready_s = self._wait_ready(t0, timeout=180)

    def _wait_ready(self, t0: float, timeout: float) -> float:
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: bentoml serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        self.stop()
        raise SystemExit(f"{self.name}: /readyz did not answer 200 in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def cpu_s(self) -> float:
        """CPU seconds so far of the server: its arbiter and every worker."""
        import psutil

        total = 0.0
        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return total
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def load(server: Server, body: bytes, concurrency: int, warmup_s: float, window_s: float) -> dict:
    """Closed-loop load: `concurrency` clients, each sending the next request when the last is answered."""
    import aiohttp

    url, headers = f"{server.url}/predict", {"content-type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    t_on = time.perf_counter() + warmup_s
    t_off = t_on + window_s
    cpu: dict[str, float] = {}

    async def client(session: aiohttp.ClientSession) -> None:
        while (t0 := time.perf_counter()) < t_off:
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = str(r.status)
            except aiohttp.ClientError as e:
                status = type(e).__name__
            t1 = time.perf_counter()
            if t_on <= t1 <= t_off:
                if status == "200":
                    latencies.append(t1 - t0)
                else:
                    errors[status] = errors.get(status, 0) + 1

    async def meter() -> None:
        # CPU used by each side during the window, to show how the cores were shared.
        await asyncio.sleep(max(0.0, t_on - time.perf_counter()))
        cpu["client"], cpu["server"] = -time.process_time(), -server.cpu_s()
        await asyncio.sleep(max(0.0, t_off - time.perf_counter()))
        cpu["client"] += time.process_time()
        cpu["server"] += server.cpu_s()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(meter(), *(client(session) for _ in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "window_s": window_s,
            "client_cpu_s": cpu["client"], "server_cpu_s": cpu["server"]}


def summarize(runs: list[dict]) -> dict:
    """Pooled over rounds: requests/s over the total window time, latency percentiles in ms."""
    lat = np.concatenate([r["latencies"] for r in runs]) * 1e3
    window = sum(r["window_s"] for r in runs)
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    if not len(lat):
        raise SystemExit(f"no request was answered 200 in the windows (answers: {errors})")
    server_cpu_s = sum(r["server_cpu_s"] for r in runs)
    return {"rps": round(len(lat) / window, 1),
            "per_server_cpu_s": round(len(lat) / server_cpu_s, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "requests": int(len(lat)), "errors": errors,
            "client_cores": round(sum(r["client_cpu_s"] for r in runs) / window, 2),
            "server_cores": round(sum(r["server_cpu_s"] for r in runs) / window, 2)}


def serve_env(overrides: dict[str, str]) -> dict[str, str]:
    """This environment without any MAAS_SERVE_* or API keys of the caller's, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "MAAS_API_KEYS"))}
    env.update(overrides)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return env


def key_values(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs as environment variables: a serve key (max_latency_ms) becomes MAAS_SERVE_<KEY>,
    any other name (OMP_NUM_THREADS) is taken as it is."""
    from dataclasses import fields

    from maas.serving.settings import ServeSettings

    serve_keys = {f.name.upper() for f in fields(ServeSettings)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{pair!r}: expected KEY=VALUE, e.g. MAX_LATENCY_MS=10")
        name = key.upper().removeprefix(ENV_PREFIX)
        out[ENV_PREFIX + name if name in serve_keys else key] = value
    return out


def meets(value: float, goal: tuple[str, float]) -> bool:
    op, target = goal
    return value >= target if op == ">=" else value <= target


def measure(tag: str, body: bytes, settings: dict[str, dict[str, str]], noop_env: dict[str, str], *, rounds: int,
            warmup: float, window: float, starts: int) -> tuple[dict[tuple[str, int], list[dict]], list[float]]:
    """The load runs of every (server, concurrency) and the ready_s of each start of the Bento.

    `settings`: MAAS_SERVE_* of each Bento server by name ("on", "off", then any variants)."""
    logs = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: dict[str, Server] = {}
    ready: list[float] = []
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        for i in range(max(0, starts - 2)):  # extra starts, each alone on the machine
            s = Server(f"start{i + 1}", [tag], serve_env(settings["on"]), logs)
            ready.append(s.ready_s)
            s.stop()
        for name, env in settings.items():
            servers[name] = Server(name, [tag], serve_env(env), logs)
        ready += [servers["on"].ready_s, servers["off"].ready_s]
        print("ready_s per start: " + ", ".join(f"{r:.2f}" for r in ready), flush=True)
        servers["noop"] = Server("noop", ["noop_service:Noop", "--working-dir", str(ROOT / "bench")],
                                 serve_env(noop_env), logs)
        names = list(servers)
        width = max(map(len, names))
        for r in range(rounds):
            for j, c in enumerate(CONCURRENCY):
                k = (r * len(CONCURRENCY) + j) % len(names)  # rotate who goes first
                for name in names[k:] + names[:k]:
                    res = asyncio.run(load(servers[name], body, c, warmup, window))
                    runs.setdefault((name, c), []).append(res)
                    print(f"round {r + 1}/{rounds} concurrency {c:>2} {name:>{width}}: "
                          f"{len(res['latencies']) / window:8,.1f} req/s", flush=True)
    except BaseException:
        print(f"server logs in {logs}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        for s in servers.values():
            s.stop()
    return runs, ready


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bento", help="folder with bento.json, bento.json, .bento archive or tag (default: paths.bento)")
    ap.add_argument("--quick", action="store_true", help="one round of shorter windows, two starts (about 1.5 min)")
    ap.add_argument("--rounds", type=int, help="rounds over every (concurrency, server) (default 3, quick 1)")
    ap.add_argument("--window", type=float, help="seconds measured per (round, concurrency, server) (default 4, quick 3)")
    ap.add_argument("--warmup", type=float, help="seconds of load before each window (default 1.5, quick 1)")
    ap.add_argument("--starts", type=int, help="starts of the Bento timed for ready_s, at least the on and off "
                    "servers' 2 (default 3, quick 2)")
    ap.add_argument("--workers", type=int, help="MAAS_SERVE_WORKERS for every server (default: the Bento's serve.json)")
    ap.add_argument("--on", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings of the batching-on server (a serve key, or any other environment variable), over "
                         "the Bento's own max_batch_size and max_latency_ms")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE...]",
                    help="one more Bento server: the on settings with these changed (a serve key, or any other "
                         "environment variable), measured beside the others but not in the figures; repeatable, "
                         "e.g. --variant MAX_LATENCY_MS=0 --variant WORKERS=2 --variant OMP_NUM_THREADS=1")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    window = args.window or (3.0 if args.quick else 4.0)
    warmup = args.warmup or (1.0 if args.quick else 1.5)
    starts = args.starts or (2 if args.quick else 3)
    began = time.perf_counter()

    tag, model_dir, temp_store = open_store(*resolve_bento(args.bento))
    try:
        from maas.serving.settings import ServeSettings

        built = ServeSettings.from_mapping(json.loads((model_dir / "serve.json").read_text()))
        workers = args.workers or built.workers
        # "on" is the batching the Bento ships with, passed explicitly so the output shows it.
        on = {ENV_PREFIX + "MAX_BATCH_SIZE": str(built.max_batch_size),
              ENV_PREFIX + "MAX_LATENCY_MS": f"{built.max_latency_ms:g}", **key_values(args.on),
              ENV_PREFIX + "WORKERS": str(workers)}
        if on[ENV_PREFIX + "MAX_BATCH_SIZE"] == "1":
            raise SystemExit("the Bento's serve.json has max_batch_size=1 (batching off): pass e.g. "
                             "--on MAX_BATCH_SIZE=64 to measure batching on")
        off = {**OFF, ENV_PREFIX + "WORKERS": str(workers)}
        variants = {v: {**on, **key_values(v.split(","))} for v in args.variant}
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(int)
        body = json.dumps({"images": [images[0].tolist()]}).encode()
        cores = os.cpu_count()
        print(f"Bento {tag} (store {os.environ['BENTOML_HOME']}); its serve.json: max_batch_size="
              f"{built.max_batch_size} max_latency_ms={built.max_latency_ms:g} workers={built.workers}")
        print(f"on: {' '.join(k + '=' + v for k, v in on.items())}; off: {' '.join(k + '=' + v for k, v in off.items())}")
        print(f"{rounds} round(s) of {warmup:g} s warm-up + {window:g} s window per (concurrency, server); one "
              f"image ({len(body)} bytes) per request; the load generator runs in this process and shares the "
              f"{cores} cores with the server", flush=True)

        per_batch = model_ceiling(model_dir, images, 0.25 if args.quick else 0.4)
        for threads in sorted({t for t, _ in per_batch}):
            print(f"ceiling (a), raw model in-process, {threads or 'default'} thread(s), images/s by batch size: "
                  + ", ".join(f"{bs}: {r:,.0f}" for (t, bs), r in per_batch.items() if t == threads), flush=True)
        runs, ready = measure(tag, body, {"on": on, "off": off, **variants}, {ENV_PREFIX + "WORKERS": str(workers)},
                              rounds=rounds, warmup=warmup, window=window, starts=starts)
    finally:
        if temp_store:
            shutil.rmtree(os.environ["BENTOML_HOME"], ignore_errors=True)

    names = ["on", "off", *variants, "noop"]
    table = {name: {c: summarize(runs[(name, c)]) for c in CONCURRENCY} for name in names}
    best_threads, best_bs = max(per_batch, key=per_batch.get)
    ceiling_a = per_batch[best_threads, best_bs]
    ceiling_b = table["noop"][64]["rps"]
    figures = {
        "vs_lower_ceiling": round(table["on"][64]["rps"] / min(ceiling_a, ceiling_b), 4),
        "batching_speedup": round(table["on"][64]["rps"] / table["off"][64]["rps"], 4),
        "ready_s": round(statistics.median(ready), 2),
    }
    # The same comparisons per second of server CPU: steadier than wall time when other jobs take cores.
    per_cpu = {name: {c: row["per_server_cpu_s"] for c, row in table[name].items()} for name in names}
    cpu_ratios = {"vs_noop": round(per_cpu["on"][64] / per_cpu["noop"][64], 4),
                  "batching_speedup": round(per_cpu["on"][64] / per_cpu["off"][64], 4)}

    w = max(6, *map(len, names))
    print(f"\n{'server':>{w}} | {'conc':>4} | {'images/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} | "
          f"{'server cores':>12} | {'client cores':>12} | {'images/server-CPU-s':>19}")
    for name in names:
        for c, row in table[name].items():
            print(f"{name:>{w}} | {c:>4} | {row['rps']:9,.1f} | {row['p50_ms']:7.2f} | {row['p99_ms']:7.2f} | "
                  f"{sum(row['errors'].values()):>6} | {row['server_cores']:12.2f} | {row['client_cores']:12.2f} | "
                  f"{row['per_server_cpu_s']:19,.1f}")
    print(f"ceiling (a) raw model in-process: {ceiling_a:,.0f} images/s at batch {best_bs}, "
          f"{best_threads or 'default'} thread(s)")
    print(f"ceiling (b) no-op endpoint at concurrency 64: {ceiling_b:,.1f} images/s "
          f"(its best: {max(row['rps'] for row in table['noop'].values()):,.1f})")
    for key, value in figures.items():
        goal = GOALS[key]
        print(f"{key} = {value:g}   goal {goal[0]} {goal[1]:g}: {'met' if meets(value, goal) else 'NOT met'}")
    print(f"per server CPU-second (a cross-check, steadier on a shared machine): on / noop at 64 "
          f"{cpu_ratios['vs_noop']:g}, on / off at 64 {cpu_ratios['batching_speedup']:g}")
    elapsed = time.perf_counter() - began
    print(f"whole run {elapsed:.0f} s; the load generator shares the {cores} cores with the server")
    print(json.dumps({
        **figures,
        "goals": {k: f"{op} {v:g}" for k, (op, v) in GOALS.items()},
        "goals_met": {k: meets(figures[k], GOALS[k]) for k in GOALS},
        "images_per_s": {name: {str(c): row["rps"] for c, row in table[name].items()} for name in names},
        "p50_ms": {name: {str(c): row["p50_ms"] for c, row in table[name].items()} for name in names},
        "p99_ms": {name: {str(c): row["p99_ms"] for c, row in table[name].items()} for name in names},
        "images_per_server_cpu_s": {name: {str(c): v for c, v in per_cpu[name].items()} for name in names},
        "per_server_cpu_s_ratios": cpu_ratios,
        "errors": {name: {str(c): row["errors"] for c, row in table[name].items() if row["errors"]} for name in names},
        "cores_used": {name: {str(c): {"server": row["server_cores"], "client": row["client_cores"]}
                              for c, row in table[name].items()} for name in names},
        "ceiling_model_images_per_s": round(ceiling_a, 1), "ceiling_model_batch": best_bs,
        "ceiling_model_threads": best_threads,
        "ceiling_noop_images_per_s": ceiling_b,
        "model_images_per_s_by_threads_batch": {f"{t}x{bs}": round(r, 1) for (t, bs), r in per_batch.items()},
        "ready_s_each": [round(r, 3) for r in ready],
        "on_env": on, "off_env": off, "variants_env": variants, "workers": workers, "bento": tag, "cores": cores,
        "load_generator": "aiohttp in the bench process, sharing the cores with the server",
        "rounds": rounds, "window_s": window, "warmup_s": warmup, "elapsed_s": round(elapsed, 1),
    }))


if __name__ == "__main__":
    main()
