"""maas.restore: a failed stage's outputs back from DVC's cache, each file checked against its md5."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from maas.errors import ArtifactError
from maas.restore import restore_out


def put(cache: Path, data: bytes, suffix: str = "") -> str:
    """Store `data` as DVC 3 does: files/md5/ab/cdef... (a directory listing's name ends in .dir)."""
    md5 = hashlib.md5(data).hexdigest() + suffix
    (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
    (cache / md5[:2] / md5[2:]).write_bytes(data)
    return md5


def folder(cache: Path, files: dict[str, bytes]) -> str:
    """A DVC 3 directory object: the sorted [{md5, relpath}] listing, stored under its own md5 + .dir."""
    listing = json.dumps([{"md5": put(cache, data), "relpath": rel} for rel, data in sorted(files.items())],
                         separators=(", ", ": ")).encode()
    return put(cache, listing, ".dir")


def test_a_folder_and_a_file_come_back_as_recorded(tmp_path):
    cache, root = tmp_path / "cache", tmp_path / "project"
    files = {"model.yaml": b"arch: cnn\n", "sub dir/weights.bin": bytes(range(256))}
    restore_out(cache, root, {"path": "models/trained", "md5": folder(cache, files)})
    restore_out(cache, root, {"path": "reports/metrics.json", "md5": put(cache, b'{"accuracy": 1}')})
    assert {p.relative_to(root / "models/trained").as_posix(): p.read_bytes()
            for p in (root / "models/trained").rglob("*") if p.is_file()} == files
    assert (root / "reports/metrics.json").read_bytes() == b'{"accuracy": 1}'


def test_a_damaged_cache_object_is_named_and_not_put_in_place(tmp_path):
    cache, root = tmp_path / "cache", tmp_path / "project"
    md5 = folder(cache, {"weights.bin": b"the real weights"})
    damaged = cache / hashlib.md5(b"the real weights").hexdigest()[:2]
    next(damaged.iterdir()).write_bytes(b"something else")  # tampered in the cache
    (root / "models" / "trained").mkdir(parents=True)
    (root / "models" / "trained" / "kept.txt").write_text("what was there")
    with pytest.raises(ArtifactError, match=r"models/trained/weights.bin: DVC's cache object .* is damaged "
                                            r"\(hash mismatch"):
        restore_out(cache, root, {"path": "models/trained", "md5": md5})
    assert [p.name for p in (root / "models" / "trained").iterdir()] == ["kept.txt"]  # the folder is untouched


@pytest.mark.parametrize("relpath", ["../../escaped.txt", "/tmp/maas-escaped.txt"])
def test_a_listing_that_points_outside_the_folder_is_refused(tmp_path, relpath):
    cache, root = tmp_path / "cache", tmp_path / "project"
    listing = json.dumps([{"md5": put(cache, b"x"), "relpath": relpath}]).encode()
    with pytest.raises(ArtifactError, match="a path outside the folder"):
        restore_out(cache, root, {"path": "models/trained", "md5": put(cache, listing, ".dir")})
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/maas-escaped.txt").exists()
