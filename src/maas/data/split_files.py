"""The preprocessed splits on disk: one folder per split holding x.npy, y.npy and index.npy.

`x` is the model-ready float32 input (rows, C, H, W), `y` the int64 class,
`index` the row's number in the raw table. Plain .npy files (not one .npz per
split) so that preprocess can append a split chunk by chunk without holding it,
and a reader can memory-map it instead of loading it (`mmap=True`). The bytes
are exactly what `np.save` writes for the same array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maas import io
from maas.errors import ArtifactError

ARRAYS = {"x": np.float32, "y": np.int64, "index": np.int64}


def split_files(processed: str | Path, name: str) -> list[Path]:
    """The files of split `name`, in a fixed order (what a fingerprint of the split hashes)."""
    return [Path(processed) / name / f"{key}.npy" for key in ARRAYS]


def read_split(processed: str | Path, name: str, mmap: bool = False) -> dict[str, np.ndarray]:
    """Split `name` as {x, y, index}; `mmap` maps the files read-only instead of reading them."""
    out = {}
    for key, path in zip(ARRAYS, split_files(processed, name)):
        io.require(path, f"{name} split")
        try:
            # allow_pickle=False: an object array is refused, not executed.
            out[key] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as e:
            raise ArtifactError(f"{path} is not a plain numeric .npy array: {e}") from e
        if out[key].dtype != ARRAYS[key]:
            raise ArtifactError(f"{path} holds {out[key].dtype}, expected {np.dtype(ARRAYS[key])}")
    if not len(out["x"]) == len(out["y"]) == len(out["index"]):
        raise ArtifactError(f"split {name} under {processed} has x, y and index of different lengths")
    return out


class SplitWriter:
    """Write split `name` of a known number of rows, appended in order (`append`), then `close()`."""

    def __init__(self, processed: str | Path, name: str, rows: int, input_shape) -> None:
        shapes = {"x": (rows, *(int(d) for d in input_shape)), "y": (rows,), "index": (rows,)}
        self.name, self.rows, self.written = name, int(rows), 0
        self.files = {}
        (Path(processed) / name).mkdir(parents=True, exist_ok=True)
        for key, path in zip(ARRAYS, split_files(processed, name)):
            f = open(path, "wb")
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(ARRAYS[key])), "fortran_order": False,
                      "shape": shapes[key]}
            np.lib.format.write_array_header_1_0(f, header)
            self.files[key] = f
        self.shape = shapes["x"][1:]

    def append(self, x: np.ndarray, y: np.ndarray, index: np.ndarray) -> None:
        if x.shape[1:] != self.shape or not len(x) == len(y) == len(index):
            raise ValueError(f"split {self.name}: rows shaped {x.shape[1:]} (expected {self.shape}), "
                             f"{len(x)}/{len(y)}/{len(index)} x/y/index rows")
        if self.written + len(x) > self.rows:
            raise ValueError(f"split {self.name}: more than the {self.rows} rows declared")
        for key, a in (("x", x), ("y", y), ("index", index)):
            self.files[key].write(np.ascontiguousarray(a, dtype=ARRAYS[key]).tobytes())
        self.written += len(x)

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        if self.written != self.rows:
            raise ValueError(f"split {self.name}: {self.written} rows written of the {self.rows} declared")


def write_split(processed: str | Path, name: str, x: np.ndarray, y: np.ndarray, index: np.ndarray) -> None:
    """A split held in memory, written at once."""
    w = SplitWriter(processed, name, len(x), x.shape[1:])
    try:
        w.append(x, y, index)
    finally:
        w.close()
