"""The Bento serves the model the package stage built: every file of it, checked at load.

The package stage records each file it puts in the BentoML model (name, sha256,
size: `manifest`) and builds the Bento with that record as a build argument, so
it is kept in the Bento's own bento.yaml, apart from the model's directory. At
load the service compares the model's files with it (`check`) and refuses to
start if a file is missing, differs, or was not packaged, naming each one.

What this catches: a corrupted, truncated or partly copied model; a model store
whose copy drifted from what was built; an edit of the model's files, even a
consistent one (model.yaml's weights_sha256 updated along with its weights).
What it does not: the record is not a signature. Whoever can write the BentoML
store (or the image) can rewrite bento.yaml as well; against that, protect the
store or image, or sign the exported archive or image outside maas.
BentoML's own model.yaml at the model's root is not ours and is not checked;
nothing maas loads comes from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from maas import io
from maas.errors import ArtifactError

# The build argument (`bentoml build --arg`) that carries the manifest into the Bento.
MANIFEST_ARG = "model_files"


def record(path: Path) -> dict[str, Any]:
    return {"sha256": io.file_sha256(path), "bytes": path.stat().st_size}


def manifest(files: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """{file name: {"sha256", "bytes"}} for files that will sit side by side in the model directory."""
    out: dict[str, dict[str, Any]] = {}
    for f in files:
        if f.name in out:
            raise ValueError(f"two files named {f.name} would overwrite each other in the model directory")
        out[f.name] = record(f)
    return out


def present(directory: Path) -> dict[str, Path]:
    """Every file under `directory` by its path relative to it (posix), directories excluded."""
    # A symlink to a folder counts as an entry: a real folder holds the files that are counted.
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
            if p.is_symlink() or not p.is_dir()}


def problems(directory: Path, expected: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What differs between `directory` and its manifest, one phrase per file; empty when they agree."""
    found = present(directory)
    out = []
    for name, want in sorted(expected.items()):
        path = found.get(name)
        if path is None or not path.is_file():  # a dangling symlink is as missing as no file
            out.append(f"{name} is missing")
            continue
        size = path.stat().st_size
        if size != want["bytes"]:
            kind = "truncated or partly copied" if size < want["bytes"] else "grown"
            out.append(f"{name} is {size} bytes, the package stage wrote {want['bytes']} ({kind})")
            continue
        actual = io.file_sha256(path)
        if actual != want["sha256"]:
            out.append(f"{name} has sha256 {actual}, the package stage recorded {want['sha256']} (changed)")
    out += [f"{name} is there but was not packaged" for name in sorted(found.keys() - expected.keys())]
    return out


REMEDY = "re-import the Bento's archive, or re-run `maas stage package`"


def check(directory: str | Path, expected: Mapping[str, Mapping[str, Any]] | None, remedy: str = REMEDY) -> None:
    """Raise ArtifactError naming every file of `directory` that is not as the manifest records it."""
    directory = Path(directory)
    if not expected:
        raise ArtifactError(f"this Bento records no manifest ({MANIFEST_ARG}) of the files in {directory}, "
                            "so they cannot be checked: rebuild it with `maas stage package`")
    for name, want in expected.items():
        if not (isinstance(want, Mapping) and isinstance(want.get("sha256"), str)
                and isinstance(want.get("bytes"), int) and not isinstance(want.get("bytes"), bool)):
            raise ArtifactError(f"the Bento's manifest entry for {name!r} is {want!r}; "
                                "expected {'sha256': <hex>, 'bytes': <size>}: rebuild it with `maas stage package`")
    found = problems(directory, expected)
    if found:
        raise ArtifactError(f"the model files in {directory} are not the ones the package stage built: "
                            + "; ".join(found) + f". Fix: {remedy}")
