"""maas.verify in a small DVC project (no git): what DVC tracks, re-hashed against what it recorded.
The S3 remote, dvc.lock outputs and `maas serve` refusing a tampered Bento: tests/e2e/test_remote.py."""

from __future__ import annotations

import hashlib
from contextlib import chdir
from pathlib import Path

import pytest

from conftest import make_project
from maas.cli import main
from maas.errors import ArtifactError, MaasError
from maas.verify import require_intact, verify


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def cache_file(project: Path, oid: str) -> Path:
    return project / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]


def tamper(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # DVC leaves cache files read-only
    path.write_bytes(data)


@pytest.fixture
def tracked(tmp_path) -> Path:
    """A folder (data/: a.txt, sub/b.txt) and a file (one.txt), each added to DVC."""
    from dvc.repo import Repo

    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_bytes(b"a")
    (tmp_path / "data" / "sub" / "b.txt").write_bytes(b"b")
    (tmp_path / "one.txt").write_bytes(b"one")
    with chdir(tmp_path), Repo.init(str(tmp_path), no_scm=True) as repo:  # DVC adds paths from the cwd
        repo.add(["data", "one.txt"])
    return tmp_path


def test_an_intact_project_passes(tracked):
    report = verify(tracked)
    assert report.ok and sorted(report.outputs) == ["data", "one.txt"]
    # workspace: 3 files; cache: the folder listing, its 2 files and one.txt
    assert report.files == 3 + 4


def test_each_changed_missing_or_extra_file_in_a_folder_is_named(tracked):
    (tracked / "data" / "sub" / "b.txt").write_bytes(b"B")
    (tracked / "data" / "a.txt").unlink()
    (tracked / "data" / "c.txt").write_bytes(b"c")
    assert [str(p) for p in verify(tracked).problems] == [
        f"data/a.txt: missing (data.dvc records md5 {md5(b'a')})",
        "data/c.txt: not recorded in data.dvc (an extra file in data/)",
        f"data/sub/b.txt: hash mismatch: data.dvc records md5 {md5(b'b')}, the file hashes to {md5(b'B')}"]


def test_a_tampered_cache_object_is_named_even_when_the_workspace_is_intact(tracked):
    tamper(cache_file(tracked, md5(b"one")), b"0ne")
    assert [str(p) for p in verify(tracked).problems] == [
        f".dvc/cache/files/md5/{md5(b'one')[:2]}/{md5(b'one')[2:]}: hash mismatch: the cache object filed as "
        f"md5 {md5(b'one')} (of one.txt) hashes to {md5(b'0ne')}; delete it, then `dvc pull` files an intact copy"]


def test_a_tampered_folder_listing_is_not_trusted_to_name_files(tracked):
    from dvc.repo import Repo

    with Repo(str(tracked)) as repo:
        oid = next(o.hash_info.value for o in repo.index.outs if o.hash_info.isdir)
    listing = cache_file(tracked, oid)
    tamper(listing, listing.read_bytes().replace(md5(b"a").encode(), md5(b"A").encode()))
    (tracked / "data" / "a.txt").write_bytes(b"A")  # what the forged listing claims
    problems = [str(p) for p in verify(tracked).problems]
    assert problems[0].startswith(f"data/: hash mismatch: data.dvc records md5 {oid}, the folder hashes to ")
    assert problems[1].startswith(f".dvc/cache/files/md5/{oid[:2]}/{oid[2:]}: hash mismatch") and len(problems) == 2


def test_a_missing_output_is_named(tracked):
    (tracked / "one.txt").unlink()
    assert [str(p) for p in verify(tracked).problems] == [
        f"one.txt: missing (`dvc pull` or `dvc repro` brings it back; one.txt.dvc records md5 {md5(b'one')})"]


def test_targets_are_outputs_files_in_them_or_dvc_files(tracked):
    assert verify(tracked, ["data/sub/b.txt"]).outputs == ["data"]
    assert verify(tracked, ["one.txt.dvc"]).outputs == ["one.txt"]
    assert verify(tracked, [str(tracked / "data")]).outputs == ["data"]
    with pytest.raises(MaasError, match=r"no DVC-tracked output, stage or .dvc file is 'dta'; tracked: data, one.txt"):
        verify(tracked, ["dta"])


def test_require_intact_refuses_a_tampered_output_and_ignores_what_dvc_does_not_track(tracked, tmp_path_factory):
    require_intact(tracked, tracked / "data", "serve it")
    require_intact(tracked, tracked / "elsewhere", "serve it")  # not tracked: nothing recorded to check
    require_intact(tmp_path_factory.mktemp("no-dvc"), tracked / "data", "serve it")  # not a DVC project
    (tracked / "data" / "a.txt").write_bytes(b"A")
    with pytest.raises(ArtifactError, match=r"refusing to serve it: data is not what DVC recorded:\n"
                                            r"  data/a.txt: hash mismatch: data.dvc records md5 "):
        require_intact(tracked, tracked / "data", "serve it")


def test_maas_verify_from_a_subfolder(tmp_path, monkeypatch, capsys):
    from dvc.repo import Repo

    project = make_project(tmp_path)
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "digits.csv").write_bytes(b"label\n1\n")
    with chdir(project), Repo.init(str(project), no_scm=True) as repo:
        repo.add(["data/raw"])
    monkeypatch.chdir(project / "conf")
    assert main(["verify", "../data/raw/digits.csv"]) == 0
    out = capsys.readouterr().out
    assert "verified 1 output(s)" in out and "every hash matches" in out
    assert main(["verify"]) == 0  # dvc.yaml's stages never ran: nothing recorded, said so
    assert "models/bento: not in dvc.lock yet (its stage never ran): not checked" in capsys.readouterr().out
    (project / "data" / "raw" / "digits.csv").write_bytes(b"label\n7\n")
    assert main(["verify", "data/raw.dvc"]) == 2  # not a path from conf/: the .dvc file, from the root
    err = capsys.readouterr().err
    assert f"data/raw/digits.csv: hash mismatch: data/raw.dvc records md5 {md5(b'label' + bytes([10]) + b'1' + bytes([10]))}" in err
    assert "nothing was repaired or used" in err
