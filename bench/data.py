"""maas validate and preprocess on a big table, beside plain pandas doing the same work, in one run.

    .venv/bin/python bench/data.py [--rows 10000000] [--format csv] [--chunk-rows 100000] [--rounds 1]

Generates a seeded table in a temp folder (numeric columns f0..f3, f2 and f3
with 1% missing values, a categorical `color`, an integer `label`; CSV by
default, as users bring tables, or Parquet), declares it as a data config
there (conf/data/bench.yaml, as a user would: MAAS_CONF_DIR), and then times,
each as its own process, taking turns:

- **maas validate**: `maas stage validate --params ...` on that config (the
  table is above data.in_memory_rows, so the chunked engine runs the suite
  build_suite declares: columns, row count, label and f0/f1/color not null,
  label and color in their sets);
- **pandas validate**: the same checks on the whole table read at once
  (`pd.read_csv`, `isna`, `isin`): the vectorized floor;
- **maas preprocess**: `maas stage preprocess --params ...` (two streamed
  passes: fit on the training rows, then transform and append to .npy);
- **pandas preprocess**: the same on the whole table in memory: a per-row
  split, mean fill and standard scaling fitted on train, one-hot `color`,
  float32 arrays saved with np.save.

Wall time is the whole process (interpreter start and imports included: what a
user waits for); "work" is what the process reports for its own job (the
stage's timer; pandas's read and checks). Peak memory is each process's peak
resident set (`wait4`'s ru_maxrss). Validate runs again on a table a tenth the
size to show whether its peak follows the table or the chunk. Absolute times
on a shared machine move by tens of percent; the ratios taken in one run are
what to compare. Goal (issue 12): validate <= 3x pandas's time at 10M rows,
its peak memory bounded by the chunk. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_VALIDATE_VS_PANDAS = 3.0
CATEGORIES = ["red", "green", "blue"]

DATA_YAML = """\
# bench/data.py's generated table.
defaults:
  - override /model@_global_.model: mlp
  - override /expectations@_global_.expectations: bench
  - _self_
kind: table
source: file
format: {fmt}
path: {path}
label_column: label
num_classes: 3
features:
  f0: {{type: numeric, missing: fail}}
  f1: {{type: numeric, missing: fail}}
  f2: {{type: numeric, missing: mean}}
  f3: {{type: numeric, missing: mean}}
  color: {{type: categorical, missing: fail, categories: [red, green, blue]}}
input_shape: [1, 1, '${{maas.table_width:${{data.features}}}}']
split:
  val_fraction: 0.15
  test_fraction: 0.15
scaling: standard
chunk_rows: {chunk_rows}
in_memory_rows: 10000     # below both tables: the chunked engine and the streamed split run
on_bad_rows: fail
"""
EXPECTATIONS_YAML = """\
suite_name: bench_raw
exact_columns: true
label_set: [0, 1, 2]
min_rows: 1000
max_rows: 1000000000
"""

PANDAS_VALIDATE = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
path, fmt = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
failed = []
if set(df.columns) != {"f0", "f1", "f2", "f3", "color", "label"}:
    failed.append("columns")
if not 1000 <= len(df) <= 1000000000:
    failed.append("rows")
for c in ("label", "f0", "f1", "color"):
    if df[c].isna().any():
        failed.append(c + " not null")
for c, allowed in (("label", [0, 1, 2]), ("color", ["red", "green", "blue"])):
    if (~df[c].dropna().isin(allowed)).any():
        failed.append(c + " in set")
print(json.dumps({"work_s": time.perf_counter() - t1, "rows": len(df), "failed": failed}))
"""

PANDAS_PREPROCESS = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import numpy as np, pandas as pd
path, fmt, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
t1 = time.perf_counter()
df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
part = np.random.default_rng(42).random(len(df))
parts = {"test": part < 0.15, "val": (part >= 0.15) & (part < 0.30), "train": part >= 0.30}
train = df[parts["train"]]
cols = []
for c in ("f0", "f1", "f2", "f3"):
    x = df[c].to_numpy(np.float64)
    t = train[c].to_numpy(np.float64)
    mean, std = np.nanmean(t), np.nanstd(t)
    cols.append(((np.where(np.isnan(x), mean, x) - mean) / (std or 1.0)).astype(np.float32))
codes = df["color"].map({"red": 0, "green": 1, "blue": 2}).to_numpy(np.int64)
onehot = np.zeros((len(df), 3), np.float32)
onehot[np.arange(len(df)), codes] = 1.0
x = np.concatenate([np.stack(cols, 1), onehot], 1).reshape(len(df), 1, 1, 7)
y = df["label"].to_numpy(np.int64)
for name, m in parts.items():
    (out / name).mkdir(parents=True, exist_ok=True)
    np.save(out / name / "x.npy", x[m]); np.save(out / name / "y.npy", y[m])
    np.save(out / name / "index.npy", np.flatnonzero(m))
print(json.dumps({"work_s": time.perf_counter() - t1, "rows": len(df)}))
"""


def generate(path: Path, rows: int, fmt: str, seed: int = 0) -> None:
    """The table, written in blocks of a million rows (the bench process stays small too)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, 1_000_000):
        n = min(1_000_000, rows - start)
        label = rng.integers(0, 3, n)
        cols = {f"f{i}": np.round(rng.normal(label * (i + 1) * 0.5, 1.0 + i, n), 4) for i in range(4)}
        for c in ("f2", "f3"):
            cols[c][rng.random(n) < 0.01] = np.nan
        cols["color"] = np.asarray(CATEGORIES, dtype=object)[(label + rng.integers(0, 2, n)) % 3]
        cols["label"] = label
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd") if fmt == "parquet" \
                else pcsv.CSVWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def measure(argv: list[str], env: dict, cwd: Path) -> dict:
    """Run `argv`; its wall seconds, peak resident MiB (wait4's ru_maxrss) and its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out[-4000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024, "out": out}


def stage_seconds(out: str, stage: str) -> float:
    return float(re.search(rf"\[maas\] stage {stage}: done in ([0-9.]+)s", out).group(1))


def pandas_work(out: str) -> float:
    return json.loads(out.strip().splitlines()[-1])["work_s"]


def project(tmp: Path, table: Path, fmt: str, chunk_rows: int, name: str) -> Path:
    """conf/ with the bench table declared, and its params file: what `maas compose data=bench` writes."""
    conf = tmp / f"conf-{name}"
    shutil.copytree(ROOT / "conf", conf, dirs_exist_ok=True)
    (conf / "data" / "bench.yaml").write_text(DATA_YAML.format(fmt=fmt, path=table, chunk_rows=chunk_rows))
    (conf / "expectations" / "bench.yaml").write_text(EXPECTATIONS_YAML)
    from maas.config import compose
    from maas.params_file import write_params

    work = tmp / f"out-{name}"
    cfg = compose(["data=bench", *(f"paths.{k}={work / k}" for k in ("validated", "processed"))], config_dir=conf)
    params = tmp / f"params-{name}.yaml"
    write_params(cfg, params)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=1, help="each measurement this many times, taking turns")
    ap.add_argument("--keep", help="generate into (and keep) this folder instead of a temp one")
    args = ap.parse_args()

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="maas-bench-data-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    maas = [sys.executable, "-m", "maas.cli"]
    try:
        sizes = {"big": args.rows, "small": args.rows // 10}
        tables, params = {}, {}
        for name, rows in sizes.items():
            tables[name] = tmp / f"table-{rows}.{args.format}"
            if not tables[name].exists():
                t0 = time.perf_counter()
                generate(tables[name], rows, args.format)
                print(f"generated {tables[name]} ({tables[name].stat().st_size / 2**20:,.0f} MiB) "
                      f"in {time.perf_counter() - t0:.1f} s", flush=True)
            params[name] = project(tmp, tables[name], args.format, args.chunk_rows, name)
        runs: dict[str, list[dict]] = {}

        def run(key: str, argv: list[str], env_extra: dict) -> None:
            r = measure(argv, {**env, **env_extra}, ROOT)
            runs.setdefault(key, []).append(r)
            print(f"  {key:<26} wall {r['wall_s']:7.2f} s   peak {r['peak_mib']:8.1f} MiB", flush=True)

        for i in range(args.rounds):
            order = ["pandas", "maas"] if i % 2 == 0 else ["maas", "pandas"]
            for name in ("big", "small"):
                conf_env = {"MAAS_CONF_DIR": str(tmp / f"conf-{name}")}
                for who in order:
                    if who == "maas":
                        run(f"maas validate {name}", [*maas, "stage", "validate", "--params", str(params[name])],
                            conf_env)
                    else:
                        run(f"pandas validate {name}", [sys.executable, "-c", PANDAS_VALIDATE,
                                                         str(tables[name]), args.format], {})
            conf_env = {"MAAS_CONF_DIR": str(tmp / "conf-big")}
            for who in order:
                if who == "maas":
                    run("maas preprocess big", [*maas, "stage", "preprocess", "--params", str(params["big"])],
                        conf_env)
                else:
                    out = tmp / "pandas-processed"
                    run("pandas preprocess big", [sys.executable, "-c", PANDAS_PREPROCESS, str(tables["big"]),
                                                  args.format, str(out)], {})
                    shutil.rmtree(out, ignore_errors=True)

        def med(key: str, what: str) -> float:
            return statistics.median(r[what] for r in runs[key])

        def work(key: str) -> float:
            stage = key.split()[1]
            return statistics.median(stage_seconds(r["out"], stage) if key.startswith("maas") else
                                     pandas_work(r["out"]) for r in runs[key])

        rows = args.rows
        print(f"\n{rows:,} rows, {args.format}, chunk_rows {args.chunk_rows:,}; medians of {args.rounds} round(s)")
        print(f"  {'':<24} {'wall s':>8} {'rows/s':>12} {'work s':>8} {'peak MiB':>9}")
        for key in ("maas validate big", "pandas validate big", "maas preprocess big", "pandas preprocess big",
                    "maas validate small", "pandas validate small"):
            n = rows if key.endswith("big") else sizes["small"]
            print(f"  {key:<24} {med(key, 'wall_s'):8.2f} {n / med(key, 'wall_s'):12,.0f} {work(key):8.2f} "
                  f"{med(key, 'peak_mib'):9.1f}")
        figures = {
            "validate_vs_pandas": round(med("maas validate big", "wall_s") / med("pandas validate big", "wall_s"), 3),
            "validate_peak_mib": round(med("maas validate big", "peak_mib"), 1),
            "validate_peak_mib_tenth_rows": round(med("maas validate small", "peak_mib"), 1),
            "pandas_validate_peak_mib": round(med("pandas validate big", "peak_mib"), 1),
            "pandas_validate_peak_mib_tenth_rows": round(med("pandas validate small", "peak_mib"), 1),
            "validate_work_vs_pandas": round(work("maas validate big") / work("pandas validate big"), 3),
            "validate_rows_per_s": round(rows / med("maas validate big", "wall_s")),
            "pandas_validate_rows_per_s": round(rows / med("pandas validate big", "wall_s")),
            "preprocess_vs_pandas": round(med("maas preprocess big", "wall_s")
                                          / med("pandas preprocess big", "wall_s"), 3),
            "preprocess_peak_mib": round(med("maas preprocess big", "peak_mib"), 1),
            "pandas_preprocess_peak_mib": round(med("pandas preprocess big", "peak_mib"), 1),
            "preprocess_rows_per_s": round(rows / med("maas preprocess big", "wall_s")),
            "pandas_preprocess_rows_per_s": round(rows / med("pandas preprocess big", "wall_s")),
        }
        met = figures["validate_vs_pandas"] <= GOAL_VALIDATE_VS_PANDAS
        print(f"  validate / pandas: {figures['validate_vs_pandas']} (goal <= {GOAL_VALIDATE_VS_PANDAS}: "
              f"{'met' if met else 'NOT met'}); peak {figures['validate_peak_mib']} MiB at {rows:,} rows, "
              f"{figures['validate_peak_mib_tenth_rows']} MiB at {sizes['small']:,} (pandas "
              f"{figures['pandas_validate_peak_mib']} / {figures['pandas_validate_peak_mib_tenth_rows']})")
        print(json.dumps({**figures, "goal_met": met, "rows": rows, "format": args.format,
                          "chunk_rows": args.chunk_rows, "rounds": args.rounds}))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
