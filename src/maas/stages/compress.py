"""compress: make the variants the config asks for, measure each as the Bento runs it, keep one.

`compress.method` names one method (conf/compress/<method>.yaml) or `auto`, which
tries every method that applies to the model. Each variant is written to disk,
loaded back exactly as the Bento loads it, and measured: stored size, validation
and test accuracy, CPU latency p50/p99 at each batch size in
`compress.latency.batches` on one thread. Choosing is model selection, so it
reads validation only: `compress.select` keeps the smallest (or fastest)
variant whose validation accuracy is within `compress.budget_points`
percentage points of the fp32 model's. `fastest_within` chooses by measured
time, so a rebuild (or another machine) may choose differently; the default
`smallest_within` gives the same choice from the same model every time. A single method that busts the budget
falls back to fp32 and the report says why. Test accuracy is reported, never
used to choose. Every variant tried is in reports/compression.json (sizes,
accuracies: tracked by DVC), its timings in reports/compression_timing.json and
on reports/compression.png (not tracked: they differ on every run).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io
from maas.checks import choice, number
from maas.errors import ConfigError, MaasError
from maas.stages import Stage, stage_entry
from maas.stages.preprocess import load_split

REPORT_FILE = "compression.json"        # what was tried and chosen: sizes and accuracies (tracked by DVC)
TIMING_FILE = "compression_timing.json"  # latency p50/p99 per batch size and build seconds (not tracked)
PLOT_FILE = "compression.png"            # size, accuracy and latency (not tracked: it shows timings)


def settings(cfg: DictConfig) -> dict:
    """cfg.compress as plain data, its shared keys checked (a method checks its own when it runs)."""
    from maas.compression import AUTO, METHODS, SELECTIONS

    choice(cfg, "compress.method", (*METHODS, AUTO))
    choice(cfg, "compress.select", SELECTIONS)
    number(cfg, "compress.budget_points", -100.0, 100.0)
    number(cfg, "compress.speed_tolerance", 0.0, 10.0)
    s = OmegaConf.to_container(cfg.compress, resolve=True)
    lat = s.get("latency") or {}
    batches, rounds = lat.get("batches"), lat.get("rounds")
    if (not isinstance(batches, list) or not batches
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches)):
        raise ConfigError(f"compress.latency.batches={batches!r} must be a list of batch sizes >= 1, e.g. [1, 64]")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"compress.latency.rounds={rounds!r} must be an integer >= 1")
    if s.get("speed_batch") not in batches:
        raise ConfigError(f"compress.speed_batch={s.get('speed_batch')!r} must be one of compress.latency.batches "
                          f"{batches}")
    candidates = s.get("candidates") or list(METHODS)
    unknown = [m for m in candidates if m not in METHODS]
    if unknown:
        raise ConfigError(f"compress.candidates names unknown method(s) {unknown}; methods are {list(METHODS)}")
    return s


def _accuracy(predictor, x, y) -> float:
    return float((predictor.predict(x).proba.argmax(1) == y).mean())


def score(directory: Path, val, test) -> tuple[dict, object]:
    """A stored variant as the Bento would run it, loaded from disk: (its record, its predictor)."""
    from maas import compression, latency, model_files

    loaded = model_files.load(directory)
    spec = loaded.spec
    # One thread, as a served worker runs: the quantized kernels' many tiny calls are several
    # times slower on two threads of a busy machine.
    with latency.one_thread():
        accuracy = {"val_accuracy": _accuracy(loaded.predictor, *val),
                    "test_accuracy": _accuracy(loaded.predictor, *test)}
    return ({"runtime": model_files.runtime(spec), "file": spec["weights"],
             "bytes": compression.artifact_bytes(directory, spec), **accuracy}, loaded.predictor)


def make_variant(method: str, source, work: Path, val, test, *, strict: bool) -> tuple[dict, object | None]:
    """Write one method's variant into work/<method>, reload and score it: (its record, its predictor).
    A method that can't take this model is recorded as skipped, one that fails as failed (raised
    when it is the only one asked for)."""
    from maas import compression

    module = compression.get(method)
    reason = module.applies(source.spec)
    if reason:
        print(f"compress: {method}: skipped ({reason})", flush=True)
        if strict:
            raise ConfigError(f"compress.method={method} does not apply to this model: {reason}")
        return {"method": method, "skipped": reason}, None
    out = work / method
    out.mkdir()
    t0 = time.perf_counter()
    try:
        module.write(source, out)
        record, predictor = score(out, val, test)
    except MaasError:
        raise
    except Exception as e:  # one broken method must not hide the others' results under auto
        if strict:
            raise
        print(f"compress: {method}: FAILED, left out:\n{traceback.format_exc()}", flush=True)
        return {"method": method, "failed": f"{type(e).__name__}: {e}"}, None
    row = {"method": method, **record, "seconds": round(time.perf_counter() - t0, 2)}
    print(f"compress: {method:>14}: {row['bytes']:>9,} bytes, val accuracy {row['val_accuracy']:.4f}, "
          f"test {row['test_accuracy']:.4f} ({row['runtime']}, made in {row['seconds']}s)", flush=True)
    return row, predictor


def time_variants(rows: list[dict], predictors: dict[str, object], x, lat: dict) -> None:
    """Add each measured variant's latency at every batch size, all timed side by side on one thread."""
    from maas import latency

    with latency.one_thread():
        for b in lat["batches"]:
            timed = latency.measure({m: p.predict for m, p in predictors.items()}, x, b, lat["rounds"])
            for row in rows:
                if row["method"] in timed:
                    row.setdefault("latency", {})[f"batch{b}"] = timed[row["method"]]
    for row in rows:
        if "latency" in row:
            print(f"compress: {row['method']:>14}: p50/p99 ms " + ", ".join(
                f"batch {k[5:]} {v['p50_ms']:.3f}/{v['p99_ms']:.3f}" for k, v in row["latency"].items()), flush=True)


@stage_entry("compress")
def run(cfg: DictConfig) -> dict:
    from maas import compression, model_files
    from maas.compression.report import plot_variants
    from maas.compression.selection import choose

    s = settings(cfg)
    method = s["method"]
    trained = Path(cfg.paths.trained)
    spec = model_files.read_spec(trained)
    val, test = load_split(cfg, "val"), load_split(cfg, "test")
    train_split = {}

    def train() -> tuple:  # only pruning's fine-tune reads it
        if not train_split:
            train_split["xy"] = load_split(cfg, "train")
        return train_split["xy"]

    source = compression.Source(spec=spec, weights=model_files.read_weights(trained, spec), settings=s,
                                calibration=val[0], seed=int(cfg.seed), train=train)
    wanted = [m for m in (s.get("candidates") or compression.available()) if m != "none"] if method == compression.AUTO \
        else ([] if method == "none" else [method])
    compressed = Path(cfg.paths.compressed)
    compressed.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".maas-compress-", dir=compressed.parent) as tmp:
        work = Path(tmp)
        made = [make_variant(m, source, work, val, test, strict=m == "none" or method != compression.AUTO)
                for m in ["none", *wanted]]
        variants = [row for row, _ in made]
        reference = variants[0]
        time_variants(variants, {row["method"]: p for row, p in made if p is not None}, val[0], s["latency"])
        measured = [v for v in variants if "latency" in v]
        chosen, why = choose(measured, reference, s["select"], s["budget_points"], s["speed_batch"],
                             s["speed_tolerance"])
        with io.atomic_dir(compressed) as out:
            for f in (work / chosen["method"]).iterdir():
                shutil.copy2(f, out / f.name)
    print(f"compress: chosen {chosen['method']}: {why}", flush=True)
    key = f"batch{s['speed_batch']}"
    # Timings differ on every run, so they stay out of what DVC hashes (compression.json, the card, the
    # Bento): they go to TIMING_FILE and the plot, beside the outputs but not among them.
    timing = {"speed_batch": s["speed_batch"],
              "speedup": round(reference["latency"][key]["p50_ms"] / chosen["latency"][key]["p50_ms"], 4),
              "variants": {v["method"]: {k: v[k] for k in ("latency", "seconds") if k in v} for v in measured}}
    report = {
        "chosen": chosen["method"], "why": why, "select": s["select"], "budget_points": s["budget_points"],
        "split": "val", "reference": "none",
        "size_ratio": round(reference["bytes"] / chosen["bytes"], 4),
        "val_accuracy_drop_points": round(100 * (reference["val_accuracy"] - chosen["val_accuracy"]), 4),
        "served_test_accuracy": chosen["test_accuracy"],
        "variants": [{k: v for k, v in row.items() if k not in ("latency", "seconds")} for row in variants],
    }
    reports = Path(cfg.paths.reports)
    io.write_json(reports / REPORT_FILE, report)
    io.write_json(reports / TIMING_FILE, timing)
    plot_variants(variants, chosen["method"], reports / PLOT_FILE, s["speed_batch"])
    return {"chosen": chosen["method"], "size_ratio": report["size_ratio"], "speedup": timing["speedup"],
            "val_accuracy_drop_points": report["val_accuracy_drop_points"]}


STAGE = Stage(
    name="compress",
    run=run,
    deps=("{paths.trained}", "{paths.processed}"),
    outs=("{paths.compressed}", "{paths.reports}/" + REPORT_FILE),
    params=("compress", "seed"),
    # Not the timings or their plot: they are no DVC output, so `dvc metrics diff HEAD` would find them at no
    # other revision and fail to load it.
    metrics=("{paths.reports}/" + REPORT_FILE,),
)
