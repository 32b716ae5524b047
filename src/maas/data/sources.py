"""Where raw data comes from, and how a raw table becomes arrays.

The default source is scikit-learn's embedded digits set (shipped inside the
wheel, so no network), exported to a deterministic CSV: the same bytes on
every machine, so `data.dvc` matches a fresh export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from maas import io
from maas.errors import ArtifactError, ConfigError, DataValidationError

SOURCES = ("digits", "csv")


def raw_file(cfg: DictConfig) -> Path:
    return Path(cfg.paths.raw) / cfg.data.file


def feature_columns(data_cfg: DictConfig) -> list[str]:
    c, h, w = data_cfg.image_shape
    return [f"{data_cfg.feature_prefix}{i}" for i in range(c * h * w)]


def export_digits(path: str | Path, label_column: str = "label", prefix: str = "pixel_") -> Path:
    """Write scikit-learn's digits as CSV: integer pixels 0..16, then the label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.int64), columns=[f"{prefix}{i}" for i in range(64)])
    frame[label_column] = digits.target.astype(np.int64)
    return io.write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def export(cfg: DictConfig) -> Path:
    """Produce the raw file for `data.source`; a `csv` source must already be there."""
    if cfg.data.source not in SOURCES:
        raise ConfigError(f"data.source={cfg.data.source!r} is not allowed; choose one of {list(SOURCES)}")
    target = raw_file(cfg)
    if cfg.data.source == "digits":
        return export_digits(target, cfg.data.label_column, cfg.data.feature_prefix)
    if not target.exists():
        raise ArtifactError(f"data.source=csv but {target} does not exist: copy your CSV there")
    return target


def read_raw(cfg: DictConfig) -> pd.DataFrame:
    path = raw_file(cfg)
    if not path.exists():
        raise ArtifactError(
            f"raw data not found at {path}: run `maas data export` (or `dvc pull data.dvc`)"
        )
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataValidationError(f"{path} is not a readable CSV table: {e}") from e


def to_arrays(frame: pd.DataFrame, data_cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 (rows, C*H*W) and labels as int64, in the column order the config names."""
    cols = feature_columns(data_cfg)
    missing = [c for c in cols + [data_cfg.label_column] if c not in frame.columns]
    if missing:
        raise ArtifactError(f"raw data lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    return frame[cols].to_numpy(np.float32), frame[data_cfg.label_column].to_numpy(np.int64)
