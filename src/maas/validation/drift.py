"""Drift: incoming data against the profile of the data the packaged model was trained on.

The package stage stores the training split's profile (`maas.data.profile`)
with the model and in `{paths.bento}/`, beside bento.json. validate reads it
from there, like evaluate's champion gate reads bento.json (`maas.gates`), and
deliberately not as a DVC dependency: it is package's output, and DVC would
see a cycle. No packaged model yet (the first run), or one packaged without a
profile: nothing to compare, and validate says so and passes.

Per feature column, the incoming values are counted in the profile's bins (a
categorical column: per training category, one bin for values training never
saw, one for nulls; a numeric one: the training quantile bins and one for
nulls), and the two distributions compared:

- PSI, the population stability index: sum over bins of (q - p) * ln(q / p),
  p the training share, q the incoming one. A bin empty on either side (a
  pixel that was always 0 in training, a category never seen) counts as
  holding EPSILON = 0.01% of its rows, so PSI stays finite: a constant column
  that stays constant scores 0, and 1% of incoming rows in a bin training
  never filled scores about 0.05. Common reading: below 0.1 stable, 0.1-0.25
  a moderate shift, above 0.25 a large one.
- KS, the Kolmogorov-Smirnov distance between the two binned CDFs (the
  largest gap between the shares at or below a cut point; the null bin last).
  It is at most the KS statistic of the raw values (it only looks at cut
  points). A categorical column has no order: its value is the total
  variation distance, the largest gap in share that any set of categories
  shows (KS's unordered counterpart; also in [0, 1]).

`drift.method` picks the statistic that is judged against `drift.warn` and
`drift.fail` (a column at or above `fail` fails validate, naming it; null
turns either off); both are computed and recorded. Both are noisy on few
rows: with no drift at all, PSI between independent samples of n and m rows
over B bins averages about (B - 1)(1/n + 1/m), recorded per column as
`chance` (simulated over 11 equal bins against exact training shares: 0.8 at
27 rows, where bins left empty by chance add to it; 0.1 at 100 rows, where
half of unchanged columns reach 0.1 and 1.6% reach 0.25; 0.03 at 300, none
reaching 0.1). So fewer than `drift.min_rows` incoming rows are compared and
recorded but not judged (status "too few rows"), and the summary says when
chance alone reaches `drift.warn`. Validating again the rows the model was
trained on (with its val and test rows) scores well below chance: the
training rows are most of them. PSI by hand in numpy:
Evidently would need the training rows themselves, not a profile, and is not
a dependency.

`DriftCheck` accumulates chunk by chunk (`update`), so validate can compare a
table larger than memory in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from maas.checks import choice, number
from maas.data.profile import class_order, load_profile, numeric_values
from maas.errors import ArtifactError, ConfigError, DataValidationError

# pandas only where a table is read: an image model's server counts its inputs here (update_values) and
# an image Bento does not install pandas.
if TYPE_CHECKING:
    import pandas as pd

METHODS = ("psi", "ks")
EPSILON = 1e-4
NO_REFERENCE, TOO_FEW = "no reference", "too few rows"
DRIFT_FILE = "drift.json"  # in paths.validated, beside result.json


def settings(cfg: DictConfig) -> dict[str, Any]:
    """`drift.method`, `drift.warn` and `drift.fail`, checked (either threshold may be null: off)."""
    method = choice(cfg, "drift.method", METHODS)
    high = 1.0 if method == "ks" else 1e6
    warn, fail = (None if OmegaConf.select(cfg, key) is None else number(cfg, key, 0.0, high)
                  for key in ("drift.warn", "drift.fail"))
    if warn is not None and fail is not None and warn > fail:
        raise ConfigError(f"drift.warn={warn:g} is above drift.fail={fail:g}: a column would fail before it warns")
    return {"method": method, "warn": warn, "fail": fail, "min_rows": int(number(cfg, "drift.min_rows", 0, 1e12))}


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (empty bins: EPSILON)."""
    p = np.maximum(np.asarray(expected, np.float64), EPSILON)
    q = np.maximum(np.asarray(actual, np.float64), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(expected: np.ndarray, actual: np.ndarray, ordered: bool = True) -> float:
    """The largest gap between the cumulative shares (ordered bins), or the total variation distance."""
    p, q = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if not ordered:
        return float(0.5 * np.abs(p - q).sum())
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).max(initial=0.0))


def chance(method: str, bins: int, rows: int, reference_rows: int) -> float:
    """About what the statistic averages with no drift at all, from sampling alone, for `rows` incoming rows
    against `reference_rows` training rows over `bins` bins: (bins - 1)(1/n + 1/m) for PSI (its chi-square
    approximation), 0.87 sqrt(1/n + 1/m) for KS (the Kolmogorov distribution's mean; binned KS is lower)."""
    both = 1 / max(rows, 1) + 1 / max(reference_rows, 1)
    return max(bins - 1, 0) * both if method == "psi" else 0.87 * both ** 0.5


def packaged_reference(bento_dir: str | Path) -> tuple[dict | None, dict | None, str]:
    """(who: the packaged Bento's tags and profile rows, its training profile, '') or (None, None, why not)."""
    from maas.gates import read_champion

    bento_dir = Path(bento_dir)
    record = read_champion(bento_dir)
    if record is None:
        return None, None, f"no model is packaged yet ({bento_dir} has no bento.json): nothing to compare"
    if not record.get("profile"):
        return None, None, (f"the packaged {record.get('bento_tag')} stores no training profile "
                            "(packaged by an older maas): nothing to compare")
    path = bento_dir / Path(str(record["profile"])).name
    if not path.exists():
        raise ArtifactError(f"{path} is missing, though {bento_dir / 'bento.json'} names it as the packaged "
                            f"model's training profile: `dvc pull` it, or run the package stage again")
    profile = load_profile(path)
    who = {"bento_tag": record.get("bento_tag"), "model_tag": record.get("model_tag"), "rows": profile["rows"]}
    return who, profile, ""


class DriftCheck:
    """Counts incoming rows in the profile's bins, chunk by chunk; `finish` compares and judges."""

    def __init__(self, profile: dict | None, columns: Iterable[str], limits: dict[str, Any],
                 reference: dict | None = None, reason: str = ""):
        self.limits, self.reference, self.reason = limits, reference, reason
        self.rows = 0
        columns = list(columns)
        known = (profile or {}).get("columns", {})
        self.profile = {name: known[name] for name in columns if name in known}
        self.sample_rows = (profile or {}).get("sample_rows", 0)  # the rows numeric bin shares come from
        self.unmatched = {"only_in_reference": [n for n in known if n not in columns],
                          "only_in_data": [n for n in columns if n not in known]} if profile else {}
        self.numeric = [n for n, c in self.profile.items() if c["type"] == "numeric"]
        self.categorical = [n for n, c in self.profile.items() if c["type"] == "categorical"]
        self._cuts = {n: np.asarray(self.profile[n]["cuts"], np.float64) for n in self.numeric}
        self._bins = {n: np.zeros(len(self._cuts[n]) + 1, np.int64) for n in self.numeric}
        self._nulls = dict.fromkeys(self.profile, 0)
        self._sums = dict.fromkeys(self.numeric, 0.0)
        self._counts: dict[str, dict[str, int]] = {n: {} for n in self.categorical}
        self.skipped: dict[str, str] = {}

    @classmethod
    def start(cls, cfg: DictConfig) -> "DriftCheck":
        """Against the model packaged in `paths.bento`, over the feature columns `data` declares."""
        from maas.data.profile import profile_columns

        limits = settings(cfg)
        reference, profile, reason = packaged_reference(cfg.paths.bento)
        return cls(profile, profile_columns(cfg.data), limits, reference, reason)

    def update(self, frame: pd.DataFrame) -> "DriftCheck":
        self.rows += len(frame)
        if not self.profile or not len(frame):
            return self
        for name in self.numeric:
            values = self._readable(frame, name)
            if values is not None:
                self._count_numeric(name, values)
        if self.categorical:
            from maas.data.table_preprocessor import count_categories
        for name in self.categorical:
            if name not in frame.columns:
                self.skipped.setdefault(name, "missing from the data")
                continue
            self._nulls[name] += count_categories(frame[name], self._counts[name])
        return self

    def update_values(self, values: np.ndarray) -> "DriftCheck":
        """Count rows given as numbers, one column per numeric profile column in profile order (an image's
        pixels), NaN for missing: `update` without a DataFrame, for a profile without categorical columns."""
        values = np.asarray(values, np.float64)
        if self.categorical or values.ndim != 2 or values.shape[1] != len(self.numeric):
            raise ValueError(f"update_values takes rows of the {len(self.numeric)} numeric columns "
                             f"(and a profile without categorical ones), got shape {values.shape}")
        self.rows += len(values)
        for j, name in enumerate(self.numeric):
            self._count_numeric(name, values[:, j])
        return self

    def _count_numeric(self, name: str, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        self._nulls[name] += len(values) - len(present)
        self._sums[name] += float(present.sum())
        cuts = self._cuts[name]
        self._bins[name] += np.bincount(np.searchsorted(cuts, present, side="left"), minlength=len(cuts) + 1)

    def _readable(self, frame: pd.DataFrame, name: str) -> np.ndarray | None:
        """The column as floats; None (and the reason kept) when it is missing or not numbers: validate's
        expectations, or preprocess, name that problem, and the other columns are still compared."""
        if name in self.skipped:
            return None
        try:
            return numeric_values(frame, [name])[:, 0]
        except DataValidationError as e:
            self.skipped[name] = str(e)
            return None

    def _shares(self, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
        """(training shares, incoming shares, what else the report shows) over one column's bins."""
        ref, rows = self.profile[name], max(self.rows, 1)
        present = 1.0 - ref["null_rate"]
        if ref["type"] == "numeric":
            counts = self._bins[name]
            seen = int(counts.sum())
            expected = np.append(np.asarray(ref["proportions"]) * present, ref["null_rate"])
            extra = {"mean": _rounded(self._sums[name] / seen) if seen else None,
                     "reference_mean": _rounded(ref["mean"])}
        else:
            freq, counts_by_value = ref["frequencies"], self._counts[name]
            counts = np.array([counts_by_value.get(v, 0) for v in freq]
                              + [sum(n for v, n in counts_by_value.items() if v not in freq)], np.int64)
            expected = np.append(np.asarray(list(freq.values()), np.float64) * present, [0.0, ref["null_rate"]])
            unseen = sorted((v for v in counts_by_value if v not in freq), key=lambda v: -counts_by_value[v])
            extra = {"unseen_values": unseen[:5]} if unseen else {}
        actual = np.append(counts, self._nulls[name]) / rows
        return expected, actual, {"null_rate": _rounded(self._nulls[name] / rows),
                                  "reference_null_rate": _rounded(ref["null_rate"]), **extra}

    def finish(self) -> dict[str, Any]:
        """The drift record validate writes into its result: per column PSI, KS and ok|warn|fail."""
        method, warn, fail = self.limits["method"], self.limits["warn"], self.limits["fail"]
        record = {"reference": self.reference, "method": method, "warn": warn, "fail": fail, "rows": self.rows}
        if not self.profile:
            reason = self.reason or ("the packaged model was trained on other columns (its profile has "
                                     f"{self.unmatched['only_in_reference'][:5]}, none of data.features): "
                                     "nothing to compare")
            return record | {"status": NO_REFERENCE, "reason": reason, "columns": {}, "worst": None}
        columns = {}
        for name in (n for n in self.profile if n not in self.skipped):
            expected, actual, extra = self._shares(name)
            ordered = self.profile[name]["type"] == "numeric"
            values = {"psi": _rounded(psi(expected, actual)), "ks": _rounded(ks(expected, actual, ordered))}
            used = int(((expected > 0) | (actual > 0)).sum())
            reference_rows = self.sample_rows if ordered else self.profile[name]["count"]
            values["chance"] = _rounded(chance(method, used, self.rows, reference_rows))
            judged = self.rows >= self.limits["min_rows"]
            columns[name] = values | {"status": _judge(values[method], warn, fail) if judged else "not judged"} | extra
        columns = dict(most_drifted({"method": method, "columns": columns}))
        worst = next(({"column": n, method: c[method], "status": c["status"]} for n, c in columns.items()), None)
        statuses = [c["status"] for c in columns.values()]
        status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
        if self.rows < self.limits["min_rows"]:
            status = TOO_FEW
            record["reason"] = (f"{self.rows} rows are fewer than drift.min_rows={self.limits['min_rows']}: "
                                "their drift is recorded but not judged (few rows drift by chance)")
        record |= {"status": status, "worst": worst, "columns": columns,
                   "warned": [n for n, c in columns.items() if c["status"] == "warn"],
                   "failed": [n for n, c in columns.items() if c["status"] == "fail"]}
        if any(self.unmatched.values()):
            record["unmatched"] = self.unmatched
        if self.skipped:
            record["skipped"] = self.skipped
        return record


def most_drifted(record: dict[str, Any]) -> list[tuple[str, dict]]:
    """(column, its drift) by the judged statistic, highest first (JSON files keep keys sorted by name)."""
    method = record.get("method", "psi")
    return sorted(record.get("columns", {}).items(), key=lambda kv: (-kv[1][method], kv[0]))


def _judge(value: float, warn: float | None, fail: float | None) -> str:
    if fail is not None and value >= fail:
        return "fail"
    if warn is not None and value >= warn:
        return "warn"
    return "ok"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def class_shift(reference: Mapping[str, float], counts: Mapping[str, int], reference_rows: int) -> dict[str, Any]:
    """How far the shares of `counts` (predicted classes, keyed by class as text) are from `reference` (the
    shares of the `reference_rows` training labels: the profile's `classes` and `rows`): PSI over the
    classes (a class training never had is a bin of its own), the total variation distance, and PSI's
    `chance` at these counts."""
    rows = int(sum(counts.values()))
    names = sorted({*reference, *counts}, key=class_order)
    expected = np.array([reference.get(k, 0.0) for k in names], np.float64)
    actual = np.array([counts.get(k, 0) for k in names], np.float64) / max(rows, 1)
    return {"psi": _rounded(psi(expected, actual)), "tvd": _rounded(ks(expected, actual, ordered=False)),
            "chance": _rounded(chance("psi", len(names), rows, reference_rows)), "rows": rows,
            "reference": {k: _rounded(float(v)) for k, v in reference.items()},
            "observed": {k: _rounded(float(v)) for k, v in zip(names, actual)}}


def check(cfg: DictConfig, frames: pd.DataFrame | Iterable[pd.DataFrame]) -> dict[str, Any]:
    """validate's one call: the drift record of one DataFrame (or an iterable of chunks) against the packaged model."""
    import pandas as pd

    drift = DriftCheck.start(cfg)
    for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
        drift.update(frame)
    return drift.finish()


def table(record: dict[str, Any], limit: int = 10) -> str:
    """The most drifted columns as a console table."""
    rows = []
    for name, c in most_drifted(record)[:limit]:
        shift = (f"{_short(c['reference_mean'])} -> {_short(c['mean'])}" if "reference_mean" in c
                 else ", ".join(f"new {v!r}" for v in c.get("unseen_values", [])) or "")
        status = c["status"].upper() if c["status"] in ("warn", "fail") else c["status"]
        rows.append([name, f"{c['psi']:.4f}", f"{c['ks']:.4f}", f"{c['chance']:.4f}" if "chance" in c else "-", shift,
                     status])
    header = ["column", "PSI", "KS", f"chance ({record.get('method', 'psi').upper()})", "mean (train -> now)",
              "status"]
    more = len(record.get("columns", {})) - limit
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines) + (f"\n  ... and {more} more column(s), all below these" if more > 0 else "")


def _short(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary(record: dict[str, Any]) -> str:
    """One line: what was compared with what, and the verdict."""
    if record["status"] == NO_REFERENCE:
        return f"drift: {NO_REFERENCE}: {record['reason']}"
    ref = record["reference"]
    if record["status"] == TOO_FEW:
        return f"drift vs the packaged {ref['bento_tag']}: {TOO_FEW}: {record['reason']}"
    limits = f"drift.warn={record['warn']}, drift.fail={record['fail']}"
    head = (f"drift ({record['method'].upper()}) of {record['rows']} rows vs the {ref['rows']} training rows of "
            f"the packaged {ref['bento_tag']} ({limits}): ")
    w = record["worst"]
    if w is None:
        return head + f"no column could be compared ({record.get('skipped')})"
    noisy = max((c.get("chance", 0.0) for c in record["columns"].values()), default=0.0)
    note = (f" (at these row counts chance alone averages up to {noisy:.3f}, at or above drift.warn: some "
            "warnings need no drift)" if record["warn"] is not None and noisy >= record["warn"] else "")
    if record["status"] == "ok":
        return head + f"all {len(record['columns'])} columns ok (worst {w['column']}: {w[record['method']]:.4f})" + note
    parts = [f"{len(record[k])} {k}" for k in ("failed", "warned") if record[k]]
    return head + ", ".join(parts) + ": " + ", ".join(
        f"{n} {record['columns'][n][record['method']]:.4f}" for n in (record["failed"] + record["warned"])[:10]) + note


def failure_message(record: dict[str, Any]) -> str:
    failed = record["failed"]
    return (f"{len(failed)} column(s) drifted at or above drift.fail={record['fail']:g} "
            f"({record['method'].upper()}) from the training data of the packaged {record['reference']['bento_tag']}: "
            + ", ".join(f"{n} ({record['columns'][n][record['method']]:.4f})" for n in failed[:10])
            + ("..." if len(failed) > 10 else "") + "\n" + table(record)
            + "\n  If this data is what the model should now see, run again with drift.fail=null (drift then only "
              "warns) to retrain on it; `maas serve` keeps serving the packaged model meanwhile.")
