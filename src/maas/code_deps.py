"""The code a stage runs, derived from its imports: the `src/maas/...` deps dvc.yaml declares for it.

A stage's outputs change when any module it imports changes, so its declared code is the closure of
its imports over the maas package, read from the source (ast, so nothing is imported or run):
module-level and function-level imports alike (the function may run), a package's `__init__` with
every module under it, and `importlib.import_module(f"maas.pkg.{name}")` as the whole of `maas.pkg`
(a registry that loads by name may load any of them). `MAAS_RECORD_IMPORTS` makes `maas stage`
record what it really imported, which tests compare with the declaration.
"""

from __future__ import annotations

import ast
import atexit
import json
import os
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # src/maas
PREFIX = "src/maas"                         # how dvc.yaml names PACKAGE, from the project root
# Every `maas stage NAME --params params.yaml` reads params.yaml through maas.params_file first.
RUNNER = ("maas.params_file",)
# Loaded by every `maas stage` process but not part of what the stage computes: the runner, which parses
# the command line (cli), finds the stage (registry), checks dvc.yaml against params.yaml (dvcfile and
# this module) and, if the stage fails, puts back the outputs DVC deleted (restore). An edit there
# re-runs nothing; tests/e2e/test_versioning.py checks that a stage process loads nothing else undeclared.
NOT_STAGE_CODE = tuple(f"{PREFIX}/{m}.py" for m in ("cli", "registry", "dvcfile", "code_deps", "restore"))
RECORD_ENV = "MAAS_RECORD_IMPORTS"


def module_file(name: str) -> Path | None:
    """The source of module `maas.a.b`: maas/a/b.py or maas/a/b/__init__.py; None if it isn't maas's."""
    parts = name.split(".")
    if parts[0] != "maas":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_modules(package: str) -> set[str]:
    """`package` and every module under it."""
    root = module_file(package)
    if root is None or root.name != "__init__.py":
        return {package} if root else set()
    return {".".join(("maas", *f.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
            for f in root.parent.rglob("*.py")}


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_prefix(node: ast.Call) -> str | None:
    """`import_module(f"maas.pkg.{x}")` -> "maas.pkg"; a constant name -> that module."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".")
    return None


@cache
def imports_of(name: str) -> frozenset[str]:
    """The maas modules that module `name` imports anywhere in its source."""
    path = module_file(name)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, path.name == "__init__.py")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from maas import io`: a module
        elif isinstance(node, ast.Call) and (prefix := _dynamic_prefix(node)):
            found.update(package_modules(prefix) if module_file(prefix) and
                         module_file(prefix).name == "__init__.py" else {prefix})
    return frozenset(m for m in found if module_file(m) is not None)


def closure(roots: tuple[str, ...]) -> set[str]:
    """`roots` and every maas module they import, directly or not, with the packages that hold them."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a/__init__
        todo.extend(imports_of(name))
    return seen


def as_deps(modules: set[str]) -> list[str]:
    """dvc.yaml paths for `modules`: a folder where every module in it is included, else the files."""
    files = {module_file(m).relative_to(PACKAGE) for m in modules}

    def collapse(folder: Path) -> list[Path]:
        here = PACKAGE / folder
        pys = [p.relative_to(PACKAGE) for p in here.rglob("*.py")]
        if folder != Path(".") and pys and all(p in files for p in pys):
            return [folder]
        out = [f for f in files if f.parent == folder]
        for sub in sorted(d for d in here.iterdir() if d.is_dir() and d.name != "__pycache__"):
            if any(f.is_relative_to(sub.relative_to(PACKAGE)) for f in files):
                out.extend(collapse(sub.relative_to(PACKAGE)))
        return out

    return sorted(f"{PREFIX}/{p.as_posix()}" for p in collapse(Path(".")))


def stage_code(stage_module: str) -> list[str]:
    """The code deps of the stage defined in `stage_module` (e.g. maas.stages.train)."""
    return as_deps(closure((stage_module, *RUNNER)))


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def record_imports_at_exit(stage: str) -> None:
    """If MAAS_RECORD_IMPORTS names a file, append the maas source files this process imported to it
    when it exits (one JSON line per stage run)."""
    target = os.environ.get(RECORD_ENV)
    if not target:
        return

    def write() -> None:
        files = sorted(f"{PREFIX}/{Path(m.__file__).resolve().relative_to(PACKAGE).as_posix()}"
                       for m in list(sys.modules.values())
                       if getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(PACKAGE))
        with open(target, "a") as f:  # one short line per process: appends don't interleave
            f.write(json.dumps({"stage": stage, "files": files}) + "\n")

    atexit.register(write)
