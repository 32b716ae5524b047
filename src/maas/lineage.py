"""Where a packaged model came from: code (git), pipeline record (dvc.lock), raw data, config.

The package stage stores this record with the model (`lineage.json` in the Bento's model, short
forms as the Bento's labels, all of it in the model card); `maas lineage` reads it back and checks
it against the workspace. The git commit is the last one that changed the pipeline's inputs (its
code, params.yaml, dvc.yaml, bentofile, the data's .dvc files), not HEAD: committing dvc.lock after a
run must not make the model look as if it came from that commit, and a fresh clone of that commit
rebuilds the same Bento.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from maas import io

LINEAGE_FILE = "lineage.json"
# The stages whose dvc.lock entries say what made the model; package itself is running when this is read.
UPSTREAM = ("validate", "preprocess", "train", "evaluate", "compress")


def _git(root: Path, *args: str, strip: bool = True) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() if strip else out.stdout


def input_paths(root: Path) -> list[str]:
    """The git-tracked files and folders the pipeline reads: dvc.yaml's deps that git tracks, with
    params.yaml, dvc.yaml and the .dvc files that pin the raw data."""
    doc = yaml.safe_load((root / "dvc.yaml").read_text()) if (root / "dvc.yaml").exists() else {}
    deps = {d for s in (doc or {}).get("stages", {}).values() for d in s.get("deps", [])}
    # One ls-files for all: a dep is tracked if git lists it, or a file under it.
    listed = set((_git(root, "ls-files", "--", *sorted(deps)) or "").splitlines()) if deps else set()
    tracked = {d for d in deps if d in listed or any(f.startswith(d.rstrip("/") + "/") for f in listed)}
    return sorted(tracked | {p for p in ("params.yaml", "dvc.yaml") if (root / p).exists()}
                  | {p.relative_to(root).as_posix() for p in root.glob("*.dvc") if p.is_file()}  # not .dvc/
                  | {p.relative_to(root).as_posix() for p in root.glob("data/*.dvc") if p.is_file()})


def git_record(root: Path) -> dict[str, Any]:
    """{commit, time, dirty}: the last commit that changed an input, its commit time, and the inputs that
    differ from it now. None values outside a git repository."""
    if _git(root, "rev-parse", "--is-inside-work-tree") != "true":
        return {"commit": None, "time": None, "dirty": []}
    paths = input_paths(root)
    commit = _git(root, "log", "-1", "--format=%H", "--", *paths) or None
    when = _git(root, "log", "-1", "--format=%cI", commit) if commit else None
    status = _git(root, "status", "--porcelain=v1", "-z", "--", *paths, strip=False) or ""
    if _git(root, "rev-parse", "--is-shallow-repository") == "true":
        # A shallow clone's history ends at its tip: the commit that last changed the inputs may be cut off.
        commit, when = None, None
    return {"commit": commit, "time": when, "dirty": _dirty(status)}


def _dirty(status: str) -> list[str]:
    """The paths in `git status --porcelain=v1 -z` output: "XY path\0" per entry, and after a rename or
    copy (X or Y is R or C) its old path as one more entry."""
    entries, paths = status.split("\0"), []
    i = 0
    while i < len(entries):
        entry = entries[i]
        if len(entry) > 3:
            paths.append(entry[3:])
            i += 1 + ("R" in entry[:2] or "C" in entry[:2])
        else:
            i += 1
    return sorted(paths)


def lock_record(root: Path) -> dict[str, Any] | None:
    """The upstream stages' dvc.lock entries and their digest; None when there is no dvc.lock."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    entries = {name: stages[name] for name in UPSTREAM if name in stages}
    return {"sha256": io.json_sha256(entries), "stages": entries}


def build(root: Path, *, config: dict, data_path: str, data_md5: str | None) -> dict[str, Any]:
    return {"git": git_record(root), "dvc_lock": lock_record(root),
            "data": {"path": data_path, "md5": data_md5},
            "config": {"sha256": io.json_sha256(config), "values": config}}


def labels(record: dict[str, Any]) -> dict[str, str]:
    """The Bento's labels: short strings a registry or `bentoml list` can show and filter on."""
    git, lock = record["git"], record["dvc_lock"]
    return {"project": "maas", "git_commit": git["commit"] or "none",
            "git_dirty": "true" if git["dirty"] else "false",
            "dvc_lock_sha256": (lock or {}).get("sha256", "none")[:16],
            "data_md5": record["data"]["md5"] or "none", "config_sha256": record["config"]["sha256"][:16]}


def build_time(record: dict[str, Any]) -> datetime:
    """The time a Bento built from this record is stamped with: its commit's, so a rebuild stamps the same."""
    when = record["git"]["time"]
    return datetime.fromisoformat(when) if when else datetime(1980, 1, 1, tzinfo=timezone.utc)
