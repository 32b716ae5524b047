"""A server's prediction log against the training profile of the packaged model: three checks.

- feature drift: each feature's PSI and KS (maas.validation.drift.DriftCheck, validate's counting and
  statistics) over the logged inputs; crossed when a feature reaches `monitor.feature_drift`
  (judged with `drift.method`);
- class shift: the predicted classes' shares against the training labels' (the profile's `classes`),
  as PSI (drift.class_shift); crossed at `monitor.class_shift`;
- refused requests: the share of logged requests answered 4xx; crossed at `monitor.rejected_rate`.

The reference is the model in `paths.bento` (bento.json and its profile.json, as validate's drift reads
it). Records of another model (the log of a server that ran an older Bento) are counted and left out.
The log is a sample (`serve.prediction_log.sample`): shares and statistics are estimates from it, and
fewer than `monitor.min_rows` logged inputs (or requests, for the refused share) are reported, not
judged, since a few rows drift by chance. The log is read in chunks, so its size is bounded by the
disk, not memory.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from maas.checks import number
from maas.data.profile import pixel_order
from maas.errors import ArtifactError, ConfigError
from maas.serving.prediction_log import LogRead, read_log
from maas.validation import drift

CHUNK_ROWS = 5000
CHECKS = ("feature_drift", "class_shift", "rejected_rate")
TOP_ERRORS = 10


def project_config(overrides: list[str]) -> DictConfig:
    """The project's config as `maas serve` reads it, params.yaml, or conf/ composed with `overrides` (thresholds,
    say) when there are any; from the project root."""
    from maas.config import compose
    from maas.params_file import PARAMS_FILE, load_params

    return compose(overrides) if overrides or not Path(PARAMS_FILE).exists() else load_params(PARAMS_FILE)


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The monitor block, checked (a threshold may be null: that check is off)."""
    out: dict[str, Any] = {}
    since = OmegaConf.select(cfg, "monitor.since_hours")
    out["since_hours"] = None if since is None else number(cfg, "monitor.since_hours", 1e-9, 1e6)
    out["min_rows"] = int(number(cfg, "monitor.min_rows", 0, 1e12))
    highs = {"feature_drift": 1.0 if drift.settings(cfg)["method"] == "ks" else 1e6, "class_shift": 1e6,
             "rejected_rate": 1.0}
    for key, high in highs.items():
        value = OmegaConf.select(cfg, f"monitor.{key}")
        out[key] = None if value is None else number(cfg, f"monitor.{key}", 0.0, high)
    for key in ("log_dir", "out"):
        value = OmegaConf.select(cfg, f"monitor.{key}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"monitor.{key}={value!r} must be a folder path")
    return out


class _Inputs:
    """Logged inputs, counted into the reference profile's bins a chunk at a time."""

    def __init__(self, check: drift.DriftCheck, columns: list[str]) -> None:
        self.check, self.columns = check, columns
        self.kind: str | None = None
        self.image_shape: tuple[int, ...] | None = None
        self._chunk: list = []

    def add(self, kind: str, values: list) -> None:
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise ArtifactError("the log holds both images and table rows: it is not one model's log")
        if kind == "images" and self.image_shape is None and values:
            self.image_shape = np.asarray(values[0]).shape
        self._chunk.extend(values)
        if len(self._chunk) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._chunk:
            return
        chunk, self._chunk = self._chunk, []
        if self.kind == "rows":
            import pandas as pd

            self.check.update(pd.DataFrame(chunk))
            return
        pixels = np.asarray(chunk, np.float64).reshape(len(chunk), -1)
        if pixels.shape[1] != len(self.columns):
            raise ArtifactError(f"the logged images have {pixels.shape[1]} pixels and the packaged model's "
                                f"profile {len(self.columns)}: the log is of another model")
        self.check.update_values(pixels)


def compare(cfg: DictConfig, log_dir: str | Path, since_hours: float | None = None,
            now: datetime | None = None) -> dict[str, Any]:
    """The summary of the log in `log_dir` (records of the last `since_hours`, default monitor.since_hours)."""
    limits = settings(cfg)
    if since_hours is not None:
        limits["since_hours"] = since_hours
    now = now or datetime.now(timezone.utc)
    since = None if limits["since_hours"] is None else now - timedelta(hours=limits["since_hours"])
    who, profile, reason = drift.packaged_reference(cfg.paths.bento)
    if profile is None:
        raise ArtifactError(f"nothing to compare the prediction log with: {reason}")
    drift_limits = drift.settings(cfg)
    method, warn = drift_limits["method"], drift_limits["warn"]
    fail = limits["feature_drift"]
    feature_limits = {"method": method, "warn": warn if warn is None or fail is None or warn <= fail else None,
                      "fail": fail, "min_rows": limits["min_rows"]}
    numeric_only = all(c["type"] == "numeric" for c in profile["columns"].values())
    columns = pixel_order(profile) if numeric_only and _pixel_names(profile) else list(profile["columns"])
    inputs = _Inputs(drift.DriftCheck(profile, columns, feature_limits, who), columns)

    stats, statuses, errors, classes, others = LogRead(), Counter(), Counter(), Counter(), Counter()
    for record in read_log(log_dir, since, stats):
        if record.get("model_tag") != who["model_tag"]:
            others[str(record.get("model_tag"))] += 1
            continue
        status = record["status"]
        statuses[status] += 1
        if 200 <= status < 300:
            kind = "images" if "images" in record else "rows" if "rows" in record else None
            if kind is None or not isinstance(record[kind], list):
                stats.unreadable_lines += 1
                continue
            inputs.add(kind, record[kind])
            classes.update(str(c) for c in record.get("classes", []))
        elif record.get("error"):
            errors[record["error"]] += 1
    inputs.flush()

    answered = sum(n for s, n in statuses.items() if 200 <= s < 300)
    refused = sum(n for s, n in statuses.items() if 400 <= s < 500)
    logged = sum(statuses.values())
    features = inputs.check.finish()
    shift = (drift.class_shift(profile["classes"], classes, profile["rows"]) if profile.get("classes") else
             {"status": drift.NO_REFERENCE, "reason": f"the profile of {who['bento_tag']} has no class shares "
                                                      "(packaged by an older maas)"})
    summary = {
        "log_dir": str(Path(log_dir).resolve()), "generated": now.isoformat(timespec="seconds"),
        "since": since.isoformat(timespec="seconds") if since else None, "reference": who,
        "files": stats.files, "unreadable_lines": stats.unreadable_lines, "kind": inputs.kind,
        "image_shape": list(inputs.image_shape) if inputs.image_shape else None,
        "requests": {"logged": logged, "answered": answered, "refused": refused,
                     "rejected_rate": round(refused / logged, 6) if logged else None,
                     "by_status": {str(s): n for s, n in sorted(statuses.items())},
                     "top_errors": [{"error": e, "requests": n} for e, n in errors.most_common(TOP_ERRORS)],
                     "other_models": dict(others)},
        "inputs": features["rows"], "features": features, "classes": shift, "thresholds": limits,
    }
    summary["checks"] = _judge(summary, limits)
    summary["crossed"] = [c["check"] for c in summary["checks"] if c["status"] == "crossed"]
    judged = any(c["status"] in ("ok", "crossed") for c in summary["checks"])
    summary["status"] = "alert" if summary["crossed"] else "ok" if judged else "not judged"
    return summary


def _pixel_names(profile: dict) -> bool:
    return all(name[-1:].isdigit() for name in profile["columns"])


def _judge(summary: dict, limits: dict) -> list[dict[str, Any]]:
    features, shift, requests = summary["features"], summary["classes"], summary["requests"]
    enough_inputs, enough_requests = summary["inputs"] >= limits["min_rows"], requests["logged"] >= limits["min_rows"]
    worst = features.get("worst") or {}
    method = features["method"]
    found = {
        "feature_drift": (worst.get(method), enough_inputs,
                          f"{method.upper()} of {worst['column']}, the most drifted feature" if worst
                          else "no feature compared"),
        "class_shift": (shift.get("psi"), enough_inputs, "PSI of the predicted classes vs the training labels"),
        "rejected_rate": (requests["rejected_rate"], enough_requests,
                          f"{requests['refused']} of {requests['logged']} logged requests refused"),
    }
    checks = []
    for name in CHECKS:
        value, enough, detail = found[name]
        threshold = limits[name]
        if threshold is None:
            status = "off"
        elif value is None:
            status = "not measured"
        elif not enough:
            status = "not judged"
            detail += f" (fewer than monitor.min_rows={limits['min_rows']})"
        else:
            status = "crossed" if value >= threshold else "ok"
        checks.append({"check": name, "value": value, "threshold": threshold, "status": status, "detail": detail})
    return checks


def headline(summary: dict) -> str:
    """One line: what was compared with what, and the verdict."""
    r, ref = summary["requests"], summary["reference"]
    refused = f", {r['refused']} refused ({r['rejected_rate']:.1%})" if r["logged"] else ""
    head = (f"monitor: {summary['inputs']} logged inputs in {r['logged']} requests{refused} vs the {ref['rows']} "
            f"training rows of {ref['bento_tag']}")
    others = sum(r["other_models"].values())
    if others:
        head += f" ({others} records of other models left out: {', '.join(r['other_models'])})"
    if summary["status"] == "alert":
        crossed = [c for c in summary["checks"] if c["status"] == "crossed"]
        return head + ": ALERT " + "; ".join(f"monitor.{c['check']} {c['value']:.4g} >= {c['threshold']:g} "
                                            f"({c['detail']})" for c in crossed)
    judged = [c for c in summary["checks"] if c["status"] == "ok"]
    unjudged = [c["check"] for c in summary["checks"] if c["status"] in ("not judged", "not measured")]
    said = ", ".join(f"{c['check']} {c['value']:.4g} < {c['threshold']:g}" for c in judged)
    if not unjudged and not judged:
        return head + ": every check is off (monitor.feature_drift, class_shift and rejected_rate are null)"
    if not judged:
        return head + f": nothing judged ({', '.join(unjudged)}: fewer than " \
                      f"monitor.min_rows={summary['thresholds']['min_rows']} logged)"
    return head + f": ok ({said}" + (f"; not judged: {', '.join(unjudged)}" if unjudged else "") + ")"
