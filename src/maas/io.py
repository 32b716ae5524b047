"""Atomic writes, hashing and safe loading.

Every file a stage declares is written to a temp file beside it and renamed
into place, so a crash or a bad input never leaves a half-written output and
the last good one stays until the new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(path: Path) -> str:
    # The writer's pid is in the name, so a later run can tell a dead writer's leftovers
    # (a SIGKILL skips every `finally`) from a live writer's work in progress.
    return f".{path.name}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files and folders that killed writers of `path` left beside it.

    If a writer died between moving the old `path` aside and moving the new one in,
    the old one is put back: the last good output must not be lost.
    """
    removed = []
    stem, parent = f".{path.name}.", path.parent
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        middle = entry.name[len(stem):-len(".tmp")]
        if not (entry.name.startswith(stem) and entry.name.endswith(".tmp")) or "." in middle:
            continue  # not ours: another file's temps, e.g. `.train.json.*.tmp` beside `train`
        pid, dash, _ = middle.partition("-")
        if dash and pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        removed.append(entry)
    old = parent / f".{path.name}.old"
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only on success.

    `durable=False` skips the fsyncs: the rename still means a killed process leaves the old file
    or the new one, never half of one, but a power cut may lose the latest (for state that is
    rewritten every few seconds, like training resume state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Whatever wrote the temp file (numpy, safetensors, matplotlib), its bytes reach
        # the disk before the rename makes them the real file.
        if durable:
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
        # mkstemp makes 0600 files; give the result the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def update_text(path: str | os.PathLike, text: str) -> bool:
    """Write `text` unless the file already holds it; return whether it wrote.
    An unchanged generated file keeps its mtime, so tools watching it stay quiet."""
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    # allow_pickle=False: an npz holding object arrays is refused, not executed.
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temp sibling, then swap it in whole.

    The old directory survives until the new one is complete; on failure the
    temp directory is removed and the old one is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys; what JSON can't hold as its str): a digest of config-like data."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_md5(path: str | os.PathLike) -> str:
    """md5, as DVC records it (so a data hash can be compared with dvc.lock)."""
    return _file_digest(path, "md5")


def file_sha256(path: str | os.PathLike) -> str:
    return _file_digest(path, "sha256")


def dir_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file or a directory tree (names and bytes, sorted)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(path) if p != path else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def require(path: str | os.PathLike, what: str) -> Path:
    """Return `path` if it exists, else name the stage that should have made it."""
    path = Path(path)
    if not path.exists():
        from maas.errors import ArtifactError

        raise ArtifactError(f"{what} not found at {path}: run the stage that produces it first")
    return path
