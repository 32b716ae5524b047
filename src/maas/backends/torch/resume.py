"""The training state after each epoch, so a killed run continues where it stopped.

Everything needed to continue bit-for-bit — model, optimizer and scheduler
state, the best epoch's weights, both random generators, the history — as one
safetensors file (tensors) plus one JSON file (the rest), never a pickle.
Both are written atomically, the JSON last: it names the epoch the tensors
belong to, so a crash between the two writes leaves the previous epoch's pair.

The folder is keyed by a fingerprint of everything that shapes training (the
config's seed, model, trainer and data sections, and the train/val files), so a
changed config or changed data never resumes a stale run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from maas import io

STATE_JSON, STATE_TENSORS = "state.json", "state.safetensors"
FORMAT = "maas.train-state/1"


def fingerprint(settings: dict, files: list[Path]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        h.update(io.file_sha256(f).encode())
    return h.hexdigest()[:16]


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference; collect the tensors."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        # JSON keys are strings; optimizer state is keyed by int parameter ids, so record which.
        return {"__dict__": [[k, _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def _write(folder: Path, epoch: int, tensors: dict[str, torch.Tensor], meta: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Not fsynced: the renames keep a killed run's state whole; only a power cut could lose an epoch.
    with io.atomic_path(folder / STATE_TENSORS, durable=False) as tmp:
        save_file(tensors, str(tmp))
    text = json.dumps({"format": FORMAT, "epoch": epoch, "tensors_sha256": io.file_sha256(folder / STATE_TENSORS),
                       "state": meta})
    with io.atomic_path(folder / STATE_JSON, durable=False) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save(folder: Path, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    _write(folder, state["epoch"], tensors, _split(state, "s", tensors))


class Saver:
    """Saves the state after each epoch in a background thread, so training doesn't wait for the disk.

    The tensors are copied first (training goes on changing them in place); one save at a time,
    and `close` waits for the last.
    """

    def __init__(self, folder: Path):
        self.folder, self.thread = folder, None

    def save(self, state: dict[str, Any]) -> None:
        import threading

        tensors: dict[str, torch.Tensor] = {}
        meta = _split(state, "s", tensors)  # clones every tensor
        self.close()
        self.thread = threading.Thread(target=_write, args=(self.folder, state["epoch"], tensors, meta),
                                       name="maas-resume-save", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def load(folder: Path) -> dict[str, Any] | None:
    """The saved state, or None if there is none or it is incomplete (then training starts fresh)."""
    try:
        blob = io.read_json(folder / STATE_JSON)
        if blob.get("format") != FORMAT or io.file_sha256(folder / STATE_TENSORS) != blob["tensors_sha256"]:
            return None
        return _join(blob["state"], load_file(str(folder / STATE_TENSORS)))
    except (OSError, ValueError, KeyError):
        return None


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
