"""Where raw data comes from, and how it is read: a CSV or Parquet table, or a folder of images.

`data.source` names what `maas data export` writes: scikit-learn's embedded
tables (shipped inside the wheel, so no network), exported deterministically
(the same bytes on every machine, so `data.dvc` matches a fresh export), or
`file` for the user's own table or folder at `data.path`. `data.format` says
how `data.path` is read; `data.kind` says what the model takes (images or
table rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from maas import io
from maas.errors import ArtifactError, ConfigError, DataValidationError

SOURCES = ("digits", "wine", "breast_cancer", "file")
FORMATS = ("csv", "parquet", "image_folder")
KINDS = ("image", "table")


def raw_file(cfg: DictConfig) -> Path:
    """The raw data's path: a table file, or a folder of class sub-folders."""
    return Path(cfg.data.path)


def raw_md5(cfg: DictConfig) -> str:
    """The md5 of the raw table, or of a folder's (relative path, md5) list: what validate vouched for."""
    path = _require(cfg)
    if not path.is_dir():
        return io.file_md5(path)
    # Hidden files (.DS_Store, editors' swap files) are not read as images, so they don't change the data.
    entries = [(str(p.relative_to(path)), io.file_md5(p)) for p in sorted(path.rglob("*"))
               if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return hashlib.md5(repr(entries).encode()).hexdigest()


def feature_columns(data_cfg: DictConfig) -> list[str]:
    """The model's raw input columns, in order: the pixels of an image, or a table's declared features."""
    if data_cfg.kind == "table":
        return list(data_cfg.features)
    c, h, w = data_cfg.image_shape
    return [f"{data_cfg.feature_prefix}{i}" for i in range(c * h * w)]


def _sklearn_table(name: str, label_column: str) -> pd.DataFrame:
    from sklearn import datasets

    bunch = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]()
    frame = pd.DataFrame(bunch.data, columns=[column_name(c) for c in bunch.feature_names])
    frame[label_column] = bunch.target.astype(np.int64)
    return frame


def column_name(feature: str) -> str:
    """scikit-learn's feature names as plain identifiers ("mean radius" -> "mean_radius")."""
    return feature.strip().replace(" ", "_").replace("/", "_").replace("-", "_")


def export_digits(path: str | Path, label_column: str = "label", prefix: str = "pixel_") -> Path:
    """Write scikit-learn's digits as CSV: integer pixels 0..16, then the label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.int64), columns=[f"{prefix}{i}" for i in range(64)])
    frame[label_column] = digits.target.astype(np.int64)
    return io.write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """`frame` as CSV or Parquet at `path`, atomically; the same frame gives the same bytes."""
    if fmt == "csv":
        return io.write_text(path, frame.to_csv(index=False, lineterminator="\n"))
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with io.atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="zstd")
        return Path(path)
    raise ConfigError(f"data.format={fmt!r} can't be written as a table; choose csv or parquet")


def export(cfg: DictConfig) -> Path:
    """Produce the raw data for `data.source` at `data.path`; a `file` source must already be there."""
    source = cfg.data.source
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} is not allowed; choose one of {list(SOURCES)}")
    target = raw_file(cfg)
    if source == "digits":
        return export_digits(target, cfg.data.label_column, cfg.data.feature_prefix)
    if source in ("wine", "breast_cancer"):
        return write_table(_sklearn_table(source, cfg.data.label_column), target, cfg.data.format)
    if not target.exists():
        raise ArtifactError(f"data.source=file but {target} does not exist: put your "
                            f"{'folder' if cfg.data.format == 'image_folder' else cfg.data.format.upper()} there "
                            "(or point data.path at it)")
    return target


def _require(cfg: DictConfig) -> Path:
    if cfg.data.format not in FORMATS:
        raise ConfigError(f"data.format={cfg.data.format!r} is not allowed; choose one of {list(FORMATS)}")
    path = raw_file(cfg)
    if not path.exists():
        how = "`maas data export`" if cfg.data.source != "file" else f"copying your data to {path}"
        raise ArtifactError(f"raw data not found at {path}: make it with {how} (or `dvc pull`)")
    return path


def read_raw(cfg: DictConfig) -> pd.DataFrame:
    """The whole raw table (an image folder read as one row of pixels per image)."""
    path = _require(cfg)
    if cfg.data.format == "image_folder":
        from maas.data.image_folder import read_folder

        return read_folder(path, cfg.data)
    if cfg.data.format == "parquet":
        try:
            # Row numbers, as iter_raw gives them: a stored pandas index would make quarantined row
            # numbers mean other rows here.
            return pd.read_parquet(path).reset_index(drop=True)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise DataValidationError(f"{path} is not a readable Parquet table: {e}") from e
    return _read_csv(path)


def in_memory_rows(cfg: DictConfig) -> int:
    """`data.in_memory_rows`: up to this many rows a table is validated and split whole, in memory;
    a larger one is streamed in chunks. A config from before the key existed keeps everything in memory."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "data.in_memory_rows")
    if value is None:
        return 1 << 62
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"data.in_memory_rows={value!r} must be a whole number >= 0")
    return value


def iter_raw(cfg: DictConfig, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The raw table in chunks of at most `chunk_rows` rows (default `data.chunk_rows`), so a table
    larger than memory can be read; the chunks' index continues across chunks (row numbers)."""
    path = _require(cfg)
    rows = int(chunk_rows or cfg.data.chunk_rows)
    if cfg.data.format == "image_folder":
        yield read_raw(cfg)
        return
    if cfg.data.format == "csv":
        try:
            yield from pd.read_csv(path, chunksize=rows)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataValidationError(f"{path} is not a readable CSV table: {e}") from e
        return
    import pyarrow.parquet as pq

    try:
        start = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield frame
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataValidationError(f"{path} is not a readable Parquet table: {e}") from e


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataValidationError(f"{path} is not a readable CSV table: {e}") from e


def to_arrays(frame: pd.DataFrame, data_cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image features as float32 (rows, C*H*W) and labels as int64, in the column order the config names."""
    cols = feature_columns(data_cfg)
    missing = [c for c in cols + [data_cfg.label_column] if c not in frame.columns]
    if missing:
        raise ArtifactError(f"raw data lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    return frame[cols].to_numpy(np.float32), labels(frame, data_cfg)


def labels(frame: pd.DataFrame, data_cfg: DictConfig) -> np.ndarray:
    """The label column as int64 class indices 0..num_classes-1 (validate has checked the set)."""
    if data_cfg.label_column not in frame.columns:
        raise ArtifactError(f"raw data lacks the label column {data_cfg.label_column!r}")
    return frame[data_cfg.label_column].to_numpy(np.int64)
