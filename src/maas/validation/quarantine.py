"""Rows held back by `data.on_bad_rows=quarantine`: written beside the validation result, read by preprocess.

The file has one line per held-back row: its row number in the raw table
(`row`, counting from 0 over data rows), the reasons (each failed expectation,
its column and the row's value there), then the row's own columns as read. It
is written chunk by chunk, so it never needs the table in memory; CSV for CSV
and image sources, Parquet (with the source's own schema) for Parquet ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maas.errors import ArtifactError

POLICIES = ("fail", "quarantine")
STEM = "quarantine"
ROW, REASONS = "row", "reasons"


def bad_rows_policy(cfg) -> str:
    """`data.on_bad_rows`, checked; a config from before it existed means `fail`."""
    from omegaconf import OmegaConf

    from maas.errors import ConfigError

    policy = OmegaConf.select(cfg, "data.on_bad_rows", default="fail")
    if policy not in POLICIES:
        raise ConfigError(f"data.on_bad_rows={policy!r} is not allowed; choose one of {list(POLICIES)}")
    return policy


def file_name(fmt: str) -> str:
    return f"{STEM}.{'parquet' if fmt == 'parquet' else 'csv'}"


class QuarantineWriter:
    """Append held-back rows; `close()` leaves a complete file (a header alone when none was held back)."""

    def __init__(self, path: Path, source: Path | None = None) -> None:
        self.path = Path(path)
        self.rows = 0
        self.parquet = self.path.suffix == ".parquet"
        self._schema = None
        self._writer = None
        self._csv = None
        self._columns: list[str] | None = None
        if self.parquet and source is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            own = pq.ParquetFile(source).schema_arrow
            # A stored pandas index is not a column of the rows (sources.read_raw drops it too).
            index = {c for c in ((own.pandas_metadata or {}).get("index_columns") or []) if isinstance(c, str)}
            self._schema = pa.schema([pa.field(ROW, pa.int64()), pa.field(REASONS, pa.string()),
                                      *(f for f in own if f.name not in (ROW, REASONS, *index))])

    def write(self, rows: pd.DataFrame, reasons: pd.Series) -> None:
        out = rows.drop(columns=[c for c in (ROW, REASONS) if c in rows.columns])
        out.insert(0, REASONS, reasons.reindex(rows.index).to_numpy(dtype=object))
        out.insert(0, ROW, rows.index.to_numpy(np.int64))
        self.rows += len(out)
        if self.parquet:
            self._write_parquet(out)
        else:
            if self._csv is None:
                self._csv = open(self.path, "w", encoding="utf-8", newline="")
                self._columns = list(out.columns)
                out.to_csv(self._csv, index=False, lineterminator="\n")
            else:
                out.to_csv(self._csv, index=False, header=False, lineterminator="\n", columns=self._columns)

    def _write_parquet(self, out: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(out, schema=self._schema, preserve_index=False) if self._schema is not None \
            else pa.Table.from_pandas(out, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self._schema, compression="zstd")
        self._writer.write_table(table)

    def close(self, columns: list[str]) -> Path:
        """Finish the file; with no row held back, it holds the header (`row`, `reasons`, `columns`)."""
        if self.parquet:
            if self._writer is None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                schema = self._schema or pa.schema([pa.field(ROW, pa.int64()), pa.field(REASONS, pa.string()),
                                                    *(pa.field(c, pa.string()) for c in columns)])
                pq.write_table(schema.empty_table(), self.path, compression="zstd")
            else:
                self._writer.close()
        elif self._csv is None:
            pd.DataFrame(columns=[ROW, REASONS, *columns]).to_csv(self.path, index=False, lineterminator="\n")
        else:
            self._csv.close()
        return self.path


def held_back_rows(path: Path) -> np.ndarray:
    """The sorted row numbers a quarantine file holds (only its `row` column is read)."""
    try:
        if Path(path).suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path, columns=[ROW]).column(ROW).to_numpy()
        else:
            rows = pd.read_csv(path, usecols=[ROW], dtype={ROW: np.int64})[ROW].to_numpy()
    except (OSError, ValueError, KeyError) as e:
        raise ArtifactError(f"{path} is not a readable quarantine file: {e}") from e
    return np.sort(rows.astype(np.int64))
