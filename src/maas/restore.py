"""Put a failed stage's last good outputs back, from DVC's cache, as dvc.lock records them.

`dvc repro` deletes a stage's outputs before running it (unless they are `persist`, which turns
DVC's run cache off). When the stage then fails, `maas stage` puts back, from DVC's cache, each
output it didn't write again as dvc.lock records it, so a failing run loses nothing and the run
cache stays on. Each file is
checked against its md5 on the way out: a damaged cache object is named, never put in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from maas import io
from maas.errors import ArtifactError

LOCK_FILE = "dvc.lock"


def cache_dir(root: Path) -> Path:
    """Where this project's DVC cache keeps md5-addressed files (cache.dir honoured)."""
    from dvc.repo import Repo

    return Path(Repo(str(root)).cache.local.path)


def cached_copy(cache: Path, md5: str, target: Path, name: str) -> None:
    """Copy cache object `md5` to `target`, refusing it if its content doesn't hash to `md5`."""
    source = cache / md5[:2] / md5[2:]
    if not source.is_file():
        raise ArtifactError(f"{name}: DVC's cache has no object {md5} (run `dvc pull` to fetch it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if (actual := io.file_md5(target)) != md5.removesuffix(".dir"):
        target.unlink()
        raise ArtifactError(f"{name}: DVC's cache object {source} is damaged (hash mismatch: its content "
                            f"hashes to {actual}, dvc.lock records {md5}); not restored")


def restore_out(cache: Path, root: Path, out: dict) -> None:
    path, md5 = root / out["path"], out["md5"]
    if md5.endswith(".dir"):
        with io.atomic_dir(path) as staged:  # the old folder is replaced only once every file checked out
            listing = staged / ".listing"
            cached_copy(cache, md5, listing, out["path"])
            entries = json.loads(listing.read_text())
            listing.unlink()
            for entry in entries:
                rel = Path(entry["relpath"])
                # The listing comes from the cache (or a remote): a path out of the folder is not a file of it.
                if rel.is_absolute() or ".." in rel.parts:
                    raise ArtifactError(f"{out['path']}: DVC's cache object {md5} lists {entry['relpath']!r}, "
                                        "a path outside the folder (tampered object); not restored")
                cached_copy(cache, entry["md5"], staged / rel, f"{out['path']}/{entry['relpath']}")
    else:
        with io.atomic_path(path) as staged:
            cached_copy(cache, md5, staged, out["path"])


def recorded_outs(stage: str, root: Path) -> list[dict]:
    """`stage`'s outputs as dvc.lock records them ([] before its first recorded run)."""
    lock = root / LOCK_FILE
    entry = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage) if lock.exists() else None
    return [o for o in (entry or {}).get("outs", []) if "md5" in o]


def missing_outputs(stage: str, root: Path) -> list[str]:
    """The recorded outputs that are not on disk: before a run, the ones `dvc repro` deleted."""
    return [o["path"] for o in recorded_outs(stage, root) if not (root / o["path"]).exists()]


def restore_outputs(stage: str, root: Path, paths: list[str]) -> tuple[list[str], list[str]]:
    """Put back those of `paths` (outputs of `stage` that DVC deleted before the run) that the failed run
    didn't write again, as dvc.lock records them: (the paths restored, what could not be and why). What it
    did write stays: stages write each output whole (atomically), and a model that fails a gate leaves its
    complete reports to look at. Each output is tried on its own."""
    outs = [o for o in recorded_outs(stage, root) if o["path"] in paths and not (root / o["path"]).exists()]
    restored, problems = [], []
    cache = cache_dir(root) if outs else None
    for out in outs:
        try:
            restore_out(cache, root, out)
            restored.append(out["path"])
        except Exception as e:  # a damaged or missing object: name it, go on with the others
            problems.append(f"{out['path']}: {e}")
    return restored, problems
