"""The image `bentoml containerize` builds from the Bento, checked without a Docker daemon.

`bentoml containerize` writes its build context (the Bento, with its models copied in) and
its Dockerfile with BentoML's `construct_containerfile`, then hands both to docker, buildx or
podman. These tests take that same context and check what the image would install and hold,
then start its entrypoint the way `docker run <image>` does: from the context, with an
empty BentoML store, so the model can only come from inside the image.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from conftest import BIN, free_port, start, stop, wait_http
from maas.serving import BENTO_MODEL_SUBDIR, integrity

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def context(tiny_run, tmp_path_factory) -> Path:
    """The build context `bentoml containerize <bento_tag>` would send to the builder."""
    import bentoml
    from bentoml._internal.container import construct_containerfile

    bento = bentoml.bentos.get(tiny_run[1]["package"]["bento_tag"])
    out = tmp_path_factory.mktemp("container") / "context"
    with construct_containerfile(bento, enable_buildkit=True) as (ctx, _):
        shutil.copytree(ctx, out, symlinks=True)
    return out


def bento_args(context: Path) -> dict:
    import yaml

    return yaml.safe_load((context / "bento.yaml").read_text())["args"]


def installed(name: str) -> str:
    return version(name).split("+")[0]  # a local label (+cpu) names this machine's wheel


def test_the_image_installs_the_service_packages_pinned_to_the_tested_versions(context):
    dockerfile = (context / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^FROM python:{sys.version_info.major}\.{sys.version_info.minor}-slim\b", dockerfile, re.M)
    assert re.search(r"pip install -r \$BENTO_PATH/env/python/requirements\.txt$", dockerfile, re.M), dockerfile
    # No respawn loop in the image either: a model that fails its checks stops the container.
    assert re.search(r"^ENV BENTOML_CONTAINERIZED=true$", dockerfile, re.M)
    lines = [ln for ln in (context / "env/python/requirements.txt").read_text().splitlines() if ln.strip()]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==([^=\s;]+)", ln).groups() for ln in lines)  # only exact pins
    assert pins.keys() >= {"torch", "safetensors", "numpy", "omegaconf", "pyyaml", "pydantic", "bentoml"}, pins
    assert {name: installed(name) for name in pins} == pins


def test_the_image_holds_the_model_the_bento_was_built_with(context):
    args = bento_args(context)
    name, version_ = args["model_tag"].split(":")
    integrity.check(context / "models" / name / version_ / BENTO_MODEL_SUBDIR, args[integrity.MANIFEST_ARG])


# Put on PYTHONPATH as sitecustomize, it runs first in every process of the server (the CLI and its
# workers) and records each top-level package that maas's own code imports, with the importer's file.
RECORD_IMPORTS = """
import builtins, os
_real, _seen, _out = builtins.__import__, set(), os.environ["MAAS_TEST_IMPORTS"]
def _record(name, globals=None, locals=None, fromlist=(), level=0):
    module = _real(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__") or ""
    if level == 0 and importer.partition(".")[0] == "maas" and name.partition(".")[0] not in _seen:
        _seen.add(name.partition(".")[0])
        with open(_out, "a") as f:
            f.write(name.partition(".")[0] + " " + str(globals.get("__file__")) + "\\n")
    return module
builtins.__import__ = _record
"""


def test_the_image_entrypoint_serves_the_bento_and_pins_what_it_imports(context, tmp_path):
    """`docker run -p 3000:3000 <image>` runs env/docker/entrypoint.sh with no arguments: it must serve
    the Bento at BENTO_PATH, its model found in the Bento alone, and every package maas's code imports
    while it loads and answers must be pinned in the image's requirements."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(RECORD_IMPORTS)
    port = free_port()
    # The image's ENV, with the context for BENTO_PATH and BIN for its /app/.venv/bin; maas comes from the
    # Bento's src alone, as in the image.
    env = {**os.environ, "BENTO_PATH": str(context), "BENTOML_HOME": str(tmp_path / "empty-store"),
           "BENTOML_CONTAINERIZED": "true", "PORT": str(port), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path / "hook"), "MAAS_TEST_IMPORTS": str(tmp_path / "imports.txt")}
    proc = start(["bash", str(context / "env/docker/entrypoint.sh")], tmp_path / "container.log", env=env, cwd=context)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
        zero = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
                [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]  # a 0 from the digits set
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"images": [zero]}, timeout=30)
    finally:
        stop(proc)
    assert r.status_code == 200 and r.json()["classes"] == [0], r.text
    store = tmp_path / "empty-store"  # BentoML lays it out, but nothing was imported into it
    assert not [*store.glob("models/*"), *store.glob("bentos/*")]

    imports = dict(line.split(" ", 1) for line in (tmp_path / "imports.txt").read_text().splitlines())
    assert all(Path(f).is_relative_to(context / "src") for f in imports.values()), imports
    requirements = (context / "env/python/requirements.txt").read_text().split()
    pinned = {canonicalize_name(line.split("==")[0]) for line in requirements}
    by_module = packages_distributions()  # stdlib modules have no distribution
    third_party = {m: {canonicalize_name(d) for d in by_module[m]} for m in imports if m in by_module and m != "maas"}
    assert {"torch", "numpy", "safetensors", "yaml", "pydantic"} <= third_party.keys(), third_party  # it saw them
    unpinned = {m: sorted(d) for m, d in third_party.items() if not d & pinned}
    assert not unpinned, (f"maas imports {unpinned} but the image does not pin them: "
                          "add them to SERVICE_PACKAGES in src/maas/stages/package.py")
