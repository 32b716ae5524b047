"""A Bento's version and archive as functions of its content, so the same model and code give the same Bento.

BentoML names each build with a fresh random version and exports it as a tar stamped with the
files' times and the build's creation time; DVC would then see a new output on every run. Here the
version is a hash of everything that goes into the build, a build that exists is reused, and the
archive (`bentoml import`-able, the same xz tar layout as `bentoml export`) has sorted entries, fixed
owners and modes, and one timestamp: `when`, the commit time of the code it was built from.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path

from maas import io

_CREATION_TIME = re.compile(r"^(\s*-?\s*)creation_time: .*$", re.M)


def tree_digest(root: Path) -> str:
    """sha256 over the Python sources under `root`: relative paths and bytes, in sorted order."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def bento_version(**content) -> str:
    """A Bento version from everything that goes into its build (JSON-able values)."""
    return io.json_sha256(content)[:16]


def _normalize(text: str, stamp: str) -> str:
    return _CREATION_TIME.sub(lambda m: f"{m.group(1)}creation_time: '{stamp}'", text)


def write_archive(bento_tag: str, target: Path, when: datetime) -> Path:
    """Export Bento `bento_tag` with its models to `target` (.bento, xz tar), byte-identical for the same Bento."""
    import bentoml

    bento = bentoml.bentos.get(bento_tag)
    stamp = when.isoformat()
    with tempfile.TemporaryDirectory(prefix="maas-bento-export-") as tmp:
        staged = Path(tmp) / "bento"
        top = Path(bento.path)
        # Only the Bento's own models/ folder (copied below), never src/maas/models, the architectures.
        shutil.copytree(bento.path, staged, ignore=lambda d, names: [
            n for n in names if n == "__pycache__" or (n == "models" and Path(d) == top)])
        for ref in bento.info.all_models:
            model = bentoml.models.get(ref.tag)
            shutil.copytree(model.path, staged / "models" / model.tag.name / model.tag.version)
            (staged / "models" / model.tag.name / "latest").write_text(model.tag.version)
        for yml in [staged / "bento.yaml", *staged.glob("models/*/*/model.yaml")]:
            yml.write_text(_normalize(yml.read_text(), stamp))
        with io.atomic_path(target) as out:
            # The xz stream records no time or name of its own: same entries, same bytes.
            with tarfile.open(out, "w:xz", format=tarfile.GNU_FORMAT) as tar:
                for path in [staged, *sorted(staged.rglob("*"))]:
                    info = tar.gettarinfo(str(path), arcname="./" + path.relative_to(staged).as_posix()
                                          if path != staged else ".")
                    info.mtime, info.uid, info.gid, info.uname, info.gname = int(when.timestamp()), 0, 0, "root", "root"
                    info.mode = 0o755 if path.is_dir() else 0o644
                    if path.is_file():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    return target
