"""No code of ours, and nothing in the built Bento, loads a pickle (or anything that runs code as it loads).

A pickle runs whatever its bytes say when it is loaded, so a model file, a cached result or a data file
that is one is code. The scan reads the source with `ast`, so comments, docstrings and strings that
mention pickle don't count, and an alias (`import pickle as p`, `from torch import load`) does. It
refuses a call, or a reference that could become one (`loader = pickle.loads`), to:
  - pickle / _pickle / cPickle / dill / cloudpickle load, loads, Unpickler; joblib.load; shelve.open;
    pandas' read_pickle (as any `.read_pickle`);
  - torch.load without `weights_only=True`; torch.hub.load (it runs the hub's code);
  - numpy.load with `allow_pickle` anything but False;
  - yaml.load / load_all without a safe loader (SafeLoader, CSafeLoader, BaseLoader), yaml.unsafe_load,
    yaml.full_load (and their _all forms);
  - a Keras load_model with `safe_mode=False`, and keras' enable_unsafe_deserialization.
The built Bento is unpacked from its archive: its Python files are scanned the same way, and none of
its other files may be a pickle stream (what the package stage stores is safetensors, JSON, YAML,
ONNX or TFLite).
"""

from __future__ import annotations

import ast
import pickle
import pickletools
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT

PICKLERS = ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
ALWAYS = {f"{m}.{f}" for m in PICKLERS for f in ("load", "loads", "Unpickler")} | {
    "joblib.load", "shelve.open", "torch.hub.load", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
    "yaml.full_load_all", "keras.config.enable_unsafe_deserialization"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}
# What a module's top-level names alias; the rest resolve to themselves.
ROOTS = {"np": "numpy", "pd": "pandas", "tf": "tensorflow"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    base = aliases.get(node.id, ROOTS.get(node.id, node.id))
    name = ".".join([base, *reversed(parts)])
    # tf.keras.x and keras.src.x are keras.x for these rules.
    return name.replace("tensorflow.keras.", "keras.").replace("keras.src.", "keras.")


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is(node: ast.expr | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_problem(name: str, call: ast.Call, aliases: dict[str, str]) -> str | None:
    """Why this call of `name` may load a pickle, or None."""
    opaque = any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args)
    if name in ALWAYS or name.endswith(".read_pickle") or name == "read_pickle":
        return f"{name}() loads a pickle"
    if name == "torch.load" and (opaque or not _is(_keyword(call, "weights_only"), True)):
        return "torch.load() without weights_only=True unpickles"
    if name in ("numpy.load", "numpy.lib.format.read_array"):
        allow = _keyword(call, "allow_pickle")
        if opaque or (allow is not None and not _is(allow, False)):
            return f"{name}() with allow_pickle unpickles object arrays"
    if name in ("yaml.load", "yaml.load_all"):
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if loader is None or _qualified(loader, aliases) not in SAFE_YAML_LOADERS:
            return f"{name}() without a safe Loader builds arbitrary Python objects"
    if name.endswith(".load_model") and (opaque or _is(_keyword(call, "safe_mode"), False)):
        return f"{name}(safe_mode=False) runs the archive's code"
    return None


CONDITIONAL = {"torch.load", "numpy.load", "numpy.lib.format.read_array", "yaml.load", "yaml.load_all"}


def problems(source: str, where: str) -> list[str]:
    """`where:line: why` for every pickle load in `source`."""
    tree = ast.parse(source, where)
    aliases = _aliases(tree)
    called = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Name, ast.Attribute)) or not isinstance(node.ctx, ast.Load):
            continue
        name = _qualified(node, aliases)
        if name is None:
            continue
        if id(node) in called:
            why = _call_problem(name, called[id(node)], aliases)
        elif name in ALWAYS or name in CONDITIONAL or name.endswith(".read_pickle"):
            why = f"{name} is referenced where its arguments can't be checked"
        else:
            why = None
        if why:
            out.append(f"{where}:{node.lineno}: {why}")
    return out


def scan_tree(root: Path, label: str) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        found += problems(path.read_text(encoding="utf-8"), f"{label}/{path.relative_to(root)}")
    return found


def is_pickle(data: bytes) -> bool:
    """Whether `data` is a whole pickle stream (protocol 2+ starts with PROTO; older ones are text-like,
    and none of our files could be read as one by chance: they'd have to end in STOP)."""
    if len(data) < 3 or data[0] != 0x80 or data[1] > pickle.HIGHEST_PROTOCOL:
        return False
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # anything that isn't opcode after opcode up to STOP
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


BAD = {
    "import pickle\npickle.loads(b'')": "pickle.loads() loads a pickle",
    "import pickle as p\nwith open('f', 'rb') as f:\n    p.load(f)": "pickle.load() loads a pickle",
    "from pickle import loads as L\nL(b'')": "pickle.loads() loads a pickle",
    "import pickle\nloader = pickle.Unpickler": "pickle.Unpickler is referenced",
    "import dill\ndill.loads(b'')": "dill.loads()",
    "import cloudpickle\ncloudpickle.load(f)": "cloudpickle.load()",
    "import joblib\njoblib.load('m.joblib')": "joblib.load()",
    "import pandas as pd\npd.read_pickle('x.pkl')": "pandas.read_pickle()",
    "from pandas import read_pickle\nread_pickle('x.pkl')": "pandas.read_pickle()",
    "import torch\ntorch.load('w.pt')": "torch.load() without weights_only=True",
    "import torch\ntorch.load('w.pt', weights_only=False)": "torch.load() without weights_only=True",
    "from torch import load\nload('w.pt', **kw)": "torch.load() without weights_only=True",
    "import torch\nf = torch.load": "torch.load is referenced",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)": "numpy.load() with allow_pickle",
    "import numpy\nnumpy.load('a.npy', allow_pickle=flag)": "numpy.load() with allow_pickle",
    "import yaml\nyaml.load(text)": "yaml.load() without a safe Loader",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)": "yaml.load() without a safe Loader",
    "import yaml\nyaml.load(text, yaml.UnsafeLoader)": "yaml.load() without a safe Loader",
    "import yaml\nyaml.full_load(text)": "yaml.full_load()",
    "import tensorflow as tf\ntf.keras.models.load_model('m.keras', safe_mode=False)":
        "keras.models.load_model(safe_mode=False)",
    "import keras\nkeras.config.enable_unsafe_deserialization()": "keras.config.enable_unsafe_deserialization()",
}
GOOD = [
    "# pickle.loads(data) would run code\nx = 1",
    "'''torch.load(path) unpickles'''\ns = 'pickle.load(f)'",
    "import torch\ntorch.load('w.pt', weights_only=True)",
    "import numpy as np\nnp.load('a.npz', allow_pickle=False)\nnp.load('a.npy')",
    "import yaml\nyaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)\nyaml.load(t, yaml.CSafeLoader)",
    "import pickle\npickle.dumps(1)",  # writing is not loading (and writing one is for tests/ only)
    "import json\njson.loads('{}')",
    "from safetensors.numpy import load_file\nload_file('w.safetensors')",
    "import keras\nkeras.saving.load_model('m.keras')",
    "def load(x):\n    return x\nload(1)",
]


@pytest.mark.parametrize("source", list(BAD), ids=range(len(BAD)))
def test_the_scan_finds_each_way_to_load_a_pickle(source):
    found = problems(source, "x.py")
    assert found and BAD[source] in found[0], found


@pytest.mark.parametrize("source", GOOD, ids=range(len(GOOD)))
def test_the_scan_ignores_comments_strings_and_safe_loads(source):
    assert problems(source, "x.py") == []


def test_the_pickle_check_tells_a_pickle_from_our_binary_files(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    assert all(is_pickle(pickle.dumps({"a": [1, 2]}, protocol=p)) for p in range(2, pickle.HIGHEST_PROTOCOL + 1))
    # safetensors files, among them some whose header length's first byte is 0x80, a pickle's PROTO opcode.
    starts = set()
    for n in range(60, 80):
        save_file({"w" * n: np.zeros(3, np.float32)}, str(tmp_path / "w.safetensors"))
        data = (tmp_path / "w.safetensors").read_bytes()
        assert not is_pickle(data)
        starts.add(data[0])
    assert 0x80 in starts


def test_src_flows_and_the_project_scripts_load_no_pickle():
    found = [p for d in ("src", "flows", "hydra_plugins", "bench") for p in scan_tree(ROOT / d, d)]
    assert found == []
    assert len(list((ROOT / "src").rglob("*.py"))) > 50  # the scan saw the package


def test_the_built_bento_holds_no_pickle_and_no_code_that_loads_one(tiny_run, tmp_path):
    cfg, _ = tiny_run
    (archive,) = Path(cfg.paths.bento).glob("*.bento")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        # What extractall(filter="data") refuses, checked by hand: Python before 3.11.4 has no filters.
        assert all((m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in Path(m.name).parts
                   for m in members)
        tar.extractall(tmp_path, members=members)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "weights.safetensors" or p.suffix in (".onnx", ".safetensors") for p in files)
    assert scan_tree(tmp_path, archive.name) == []
    assert [p for p in files if p.suffix != ".py" and is_pickle(p.read_bytes())] == []
    assert len([p for p in files if p.suffix == ".py"]) > 50
