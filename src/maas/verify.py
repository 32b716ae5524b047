"""Re-hash the files DVC tracks against the md5s dvc.lock and the .dvc files record.

DVC 3 trusts its cache: `dvc checkout` and `dvc pull` copy a cached object into the workspace
without re-hashing it and note the hash it was filed under, so a tampered cache object (or one
pulled from a tampered remote whose `verify` is off) lands in the workspace while `dvc status`
reports everything up to date. A remote with `verify = true` re-hashes what it downloads and
discards a bad object; the local cache has no such setting. So here the bytes themselves are
hashed (DVC's own hashing, never its state database): in the workspace, in the local cache and,
when asked, on a remote.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from maas.errors import ArtifactError, MaasError


@dataclass(frozen=True)
class Problem:
    where: str  # a path in the project, a cache file or a remote URL
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    outputs: list[str] = field(default_factory=list)  # the outputs checked, as dvc.lock names them
    files: int = 0  # files hashed (workspace, cache and remote copies)
    problems: list[Problem] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # tracked, but no hash recorded yet (never run)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Checker:
    def __init__(self, repo, remote: str | None | bool):
        from dvc_objects.fs.local import LocalFileSystem

        self.repo = repo
        self.local = LocalFileSystem()
        self.remote = None
        if remote is not False:
            try:
                self.remote = repo.cloud.get_remote_odb(remote or None, "maas verify")
            except Exception as e:  # no default remote, an unknown name, a missing plugin
                raise MaasError(f"cannot open the DVC remote {remote or '(default)'}: {e}") from None
        self.report = Report()
        self._seen: set[tuple[str, str]] = set()  # (store, oid) already hashed

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.repo.root_dir)

    def md5(self, path: str, fs=None) -> str:
        from dvc_data.hashfile.hash import file_md5

        self.report.files += 1
        return file_md5(path, fs or self.local)

    # -- one output ---------------------------------------------------------------------------------------
    def output(self, out, stores: bool = True) -> None:
        """The output in the workspace; with `stores`, its objects in the cache and on the remote too."""
        rel = self.rel(out.fs_path)
        expected = out.hash_info.value if out.hash_info else None
        if not expected:
            self.report.unrecorded.append(rel)
            return
        self.report.outputs.append(rel)
        recorded = self.recorded_tree(out, expected) if out.hash_info.isdir else None
        self.workspace(out, rel, expected, recorded)
        if stores and out.use_cache:
            self.stored(out.cache, "cache", out, expected, recorded)
            if self.remote is not None:
                self.stored(self.remote, "remote", out, expected, recorded)

    def workspace(self, out, rel: str, expected: str, recorded) -> None:
        from dvc.stage import PipelineStage

        record = "dvc.lock" if isinstance(out.stage, PipelineStage) else self.rel(out.stage.path)
        path = out.fs_path
        if not os.path.exists(path):
            self.report.problems.append(Problem(rel, f"missing (`dvc pull` or `dvc repro` brings it back; "
                                                     f"{record} records md5 {expected})"))
            return
        if not out.hash_info.isdir:
            actual = self.md5(path)
            if actual != expected:
                self.report.problems.append(Problem(rel, _mismatch(record, expected, actual)))
            return
        tree = self.tree(path)
        if tree.hash_info.value == expected:
            return
        if recorded is None:  # no intact listing to say which file differs: name the folder
            self.report.problems.append(Problem(rel + "/", _mismatch(record, expected, tree.hash_info.value,
                                                                     "folder")))
            return
        ours = {key: hi.value for key, _, hi in recorded}
        theirs = {key: hi.value for key, _, hi in tree}
        for key in sorted(ours.keys() | theirs.keys()):
            name = "/".join((rel, *key))
            if key not in theirs:
                self.report.problems.append(Problem(name, f"missing ({record} records md5 {ours[key]})"))
            elif key not in ours:
                self.report.problems.append(Problem(name, f"not recorded in {record} (an extra file in {rel}/)"))
            elif ours[key] != theirs[key]:
                self.report.problems.append(Problem(name, _mismatch(record, ours[key], theirs[key])))

    def tree(self, path: str):
        """The folder's listing and hash as DVC computes them (same ignore rules), from the bytes."""
        from dvc_data.hashfile.build import build
        from dvc_data.hashfile.db import HashFileDB

        scratch = HashFileDB(self.local, os.path.join(self.repo.root_dir, ".dvc", "tmp", "maas-verify"))
        _, _, tree = build(scratch, path, self.local, "md5", dry_run=True, ignore=self.repo.dvcignore)
        self.report.files += len(tree)
        return tree

    def recorded_tree(self, out, oid: str):
        """The folder listing filed under `oid`, from the cache or else the remote, if its bytes
        hash to `oid`; None when neither holds an intact copy."""
        import io
        import json

        from dvc_data.hashfile.hash import fobj_md5
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        for odb in (out.cache, self.remote):
            if odb is None:
                continue
            path = odb.oid_to_path(oid)
            try:
                with _reading(odb.fs.unstrip_protocol(path)), odb.fs.open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            if fobj_md5(io.BytesIO(data)) != oid.split(".")[0]:
                continue  # stored() reports it
            tree = Tree.from_list(json.loads(data), hash_name="md5")
            tree.hash_info = HashInfo("md5", oid)
            return tree
        return None

    def stored(self, odb, kind: str, out, oid: str, recorded) -> None:
        """Every object the output is filed under in `odb` (the cache or a remote) hashes to its name."""
        oids = [oid, *(hi.value for _, _, hi in recorded)] if recorded is not None else [oid]
        rel, missing = self.rel(out.fs_path), 0
        for one in oids:
            if (kind, one) in self._seen:
                continue
            self._seen.add((kind, one))
            path = odb.oid_to_path(one)
            where = self.rel(path) if kind == "cache" else odb.fs.unstrip_protocol(path)
            try:
                with _reading(where):
                    actual = self.md5(path, odb.fs)
            except FileNotFoundError:
                missing += 1  # a cache holds only what was pulled or built here; a remote should hold all
                continue
            if actual != one.split(".")[0]:
                # DVC never replaces an object it finds under the right name: a bad one must go first.
                fix = ("delete it, then `dvc pull` files an intact copy" if kind == "cache"
                       else "delete it there, then `dvc push` from a copy whose `maas verify` passes")
                self.report.problems.append(Problem(where, f"hash mismatch: the {kind} object filed as md5 {one} "
                                                           f"(of {rel}) hashes to {actual}; {fix}"))
        if kind == "remote" and missing:
            self.report.problems.append(Problem(rel, f"{missing} of its {len(oids)} objects missing on the remote "
                                                     f"{odb.fs.unstrip_protocol(odb.path)} (`dvc push` sends them)"))


@contextmanager
def _reading(where: str) -> Iterator[None]:
    """A store that can't be read (credentials, network) stops the check with its reason;
    botocore's and fsspec's errors share no base class but Exception."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as e:
        raise MaasError(f"cannot read {where}: {type(e).__name__}: {e}") from None


# After checking out a bad object DVC records the hash it expected for the file, so `dvc status`
# calls it up to date and `dvc pull -f` leaves it in place: it has to be deleted first.
WORKSPACE_FIX = ("a workspace file that fails its hash: delete it, then `dvc checkout` once `maas verify` passes for "
                 "the cache (or `dvc repro` rebuilds it); `maas verify -c` checks the cache and the remote")


def _mismatch(record: str, expected: str, actual: str, what: str = "file") -> str:
    return f"hash mismatch: {record} records md5 {expected}, the {what} hashes to {actual}"


def _outs(repo, targets: Iterable[str]) -> Iterator:
    """The tracked outputs `targets` name: a path (an output, a file in one, or a folder holding
    some), a stage name or a .dvc file; all of them when there are no targets."""
    outs = list(repo.index.outs)
    targets = list(targets)
    if not targets:
        yield from outs
        return
    root = Path(repo.root_dir)
    for target in targets:
        path = Path(target) if Path(target).is_absolute() else root / target
        path = Path(os.path.normpath(path))
        chosen = [o for o in outs if target == o.stage.addressing or path == Path(o.stage.path)
                  or path == Path(o.fs_path) or Path(o.fs_path) in path.parents or path in Path(o.fs_path).parents]
        if not chosen:
            raise MaasError(f"no DVC-tracked output, stage or .dvc file is {target!r}; tracked: "
                            + ", ".join(sorted(os.path.relpath(o.fs_path, root) for o in outs)))
        yield from chosen


def verify(root: str | os.PathLike, targets: Iterable[str] = (), remote: str | None | bool = False) -> Report:
    """Hash every tracked output (or those `targets` name) in the workspace and the local cache, and
    on `remote` (None: the default remote; False: no remote) against what DVC recorded."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        raise MaasError(f"{root} is not a DVC project (no .dvc/): nothing is tracked to verify") from None
    try:
        checker = _Checker(repo, remote)
        done = set()
        for out in _outs(repo, targets):
            if out.fs_path not in done:
                done.add(out.fs_path)
                checker.output(out)
        return checker.report
    finally:
        repo.close()


def require_intact(root: str | os.PathLike, path: str | os.PathLike, use: str) -> None:
    """Raise ArtifactError unless `path` (a tracked output) is, byte for byte, what DVC recorded.
    Nothing to check outside a DVC project or for a path DVC doesn't track."""
    root, path = Path(root), Path(path).resolve()
    if not (root / ".dvc").is_dir():
        return
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = [o for o in repo.index.outs if Path(o.fs_path) == path and o.hash_info]
        if not outs:
            return
        checker = _Checker(repo, remote=False)
        for out in outs:
            checker.output(out, stores=False)
    if problems := checker.report.problems:
        raise ArtifactError(f"refusing to {use}: {os.path.relpath(path, root)} is not what DVC recorded:\n  "
                            + "\n  ".join(map(str, problems)) + "\n" + WORKSPACE_FIX)
