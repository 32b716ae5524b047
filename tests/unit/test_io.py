"""Atomic writes: a failure mid-write leaves what was there before."""

from __future__ import annotations

import numpy as np
import pytest

from maas import io
from maas.errors import ArtifactError


def test_failed_write_keeps_old_file(tmp_path):
    path = io.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind


def test_written_files_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = io.write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_dir_build_keeps_old_dir(tmp_path):
    target = tmp_path / "out"
    with io.atomic_dir(target) as d:
        (d / "f").write_text("v1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as d:
            (d / "f").write_text("v2")
            raise RuntimeError("crash")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with io.atomic_dir(target) as d:
        (d / "g").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["g"]  # replaced whole, not merged


def test_npz_refuses_object_arrays(tmp_path):
    io.write_npz(tmp_path / "ok.npz", x=np.arange(3))
    assert io.read_npz(tmp_path / "ok.npz")["x"].tolist() == [0, 1, 2]
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        io.read_npz(tmp_path / "bad.npz")


def test_require_names_what_is_missing(tmp_path):
    with pytest.raises(ArtifactError, match="validation result not found"):
        io.require(tmp_path / "x.json", "validation result")


def test_dir_hash_changes_with_content_and_names(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("1")
    h1 = io.dir_sha256(tmp_path / "d")
    (tmp_path / "d" / "a").write_text("2")
    h2 = io.dir_sha256(tmp_path / "d")
    (tmp_path / "d" / "a").rename(tmp_path / "d" / "b")
    assert len({h1, h2, io.dir_sha256(tmp_path / "d")}) == 3


def dead_pid() -> int:
    """A pid that no process has: one that just exited."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_dead_writers_temps_are_removed_by_the_next_write(tmp_path):
    import os

    dead = tmp_path / f".train.{dead_pid()}-abc123.tmp"
    legacy = tmp_path / ".train.k2j4h5g6.tmp"      # before temp names carried the writer's pid
    live = tmp_path / f".train.{os.getpid()}-xyz789.tmp"
    other = tmp_path / ".train.json.1-abc.tmp"     # another output's temp file
    for d in (dead, legacy, live):
        d.mkdir(mode=0o700)
        (d / "part.bin").write_bytes(b"x")
    other.write_text("x")
    with io.atomic_dir(tmp_path / "train") as out:
        (out / "f").write_text("new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["train", live.name, other.name])
    io.write_text(tmp_path / "a.txt", "x")
    (tmp_path / f".a.txt.{dead_pid()}-q1w2e3.tmp").write_text("half")
    io.write_text(tmp_path / "a.txt", "y")
    assert not list(tmp_path.glob(".a.txt.*"))


def test_a_writer_killed_mid_swap_gets_the_last_good_dir_back(tmp_path):
    """Killed after moving the old dir aside and before moving the new one in."""
    old = tmp_path / ".trained.old"
    old.mkdir()
    (old / "weights").write_text("last good")
    assert io.remove_stale_temps(tmp_path / "trained") == []
    assert (tmp_path / "trained" / "weights").read_text() == "last good" and not old.exists()
