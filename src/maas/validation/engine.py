"""Validate the raw table with the engine its size calls for, holding bad rows back when asked.

Up to `data.in_memory_rows` rows, Great Expectations validates the whole table
in memory and renders its Data Docs. A larger table is validated chunk by chunk
(`data.chunk_rows` rows at a time, `chunked.py`) with the same expectations and
GX's semantics, in memory bounded by the chunk, without Data Docs. Which one
runs is decided by reading: chunks are read until the table proves larger than
the limit, so no row is read twice and memory stays within
`in_memory_rows + chunk_rows` rows.

With `data.on_bad_rows=quarantine`, rows failing a column map expectation
(not null, between, in set, regex, type, ...) go to the quarantine file with
their reasons, and the suite is judged on the rows that remain.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from maas import io
from maas.data.sources import in_memory_rows, iter_raw, raw_file, read_raw
from maas.validation.quarantine import QuarantineWriter, file_name

GX_ENGINE, CHUNKED_ENGINE = "great_expectations", "chunked"


@dataclass
class Outcome:
    report: dict[str, Any]       # what validate_frame returns: suite, success, statistics, failed
    rows: int                    # rows read
    engine: str
    quarantine: dict | None      # file, rows, md5, by_expectation; None unless on_bad_rows=quarantine

    @property
    def passed_rows(self) -> int:
        return self.rows - (self.quarantine["rows"] if self.quarantine else 0)


def start_importing_gx() -> threading.Thread:
    """Import Great Expectations in a thread: its few seconds of imports then overlap the work that
    needs no GX (hashing the raw file, which frees the GIL; reading the first chunks), and
    `suite_for`'s own import waits for this one (Python's import lock) instead of starting over."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    def load() -> None:
        try:
            import great_expectations  # noqa: F401
        except Exception:  # noqa: BLE001 - the import in suite_for raises it again, in the stage's thread
            pass

    thread = threading.Thread(target=load, name="maas-import-gx", daemon=True)
    thread.start()
    return thread


def suite_for(cfg: DictConfig):
    """The suite `build_suite` declares, built in an ephemeral GX context (GX wants one to add to)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    from maas.validation.suite import build_suite

    gx.get_context(mode="ephemeral")
    return build_suite(cfg.data, cfg.expectations)


def validate_table(cfg: DictConfig, out: Path, docs_dir: Path, quarantine: bool,
                   on_rows: Sequence[Callable[[pd.DataFrame], None]] = ()) -> Outcome:
    """Validate the raw table; each of `on_rows` is handed every chunk of the rows that count (all of
    them, or those not quarantined), so what else learns from the incoming data needs no second read."""
    from maas.validation.chunked import ChunkedValidation
    from maas.validation.suite import validate_frame

    limit = in_memory_rows(cfg)
    chunks = iter_raw(cfg)
    head: list[pd.DataFrame] = []
    rows = 0
    for chunk in chunks:
        head.append(chunk)
        rows += len(chunk)
        if rows > limit:
            break
    writer = QuarantineWriter(out / file_name(cfg.data.format),
                              raw_file(cfg) if cfg.data.format == "parquet" else None) if quarantine else None
    try:
        if rows <= limit:
            frame = (head[0] if len(head) == 1 else pd.concat(head)) if head else read_raw(cfg)
            del head
            columns = [str(c) for c in frame.columns]
            if writer is not None:
                # The row checks GX would make, here for each row; GX then judges the rows that remain.
                checks = ChunkedValidation(suite_for(cfg), partial=True)
                reasons = checks.feed(frame, quarantine=True)
                if reasons is not None:
                    writer.write(frame.loc[reasons.index], reasons)
                    frame = frame.drop(index=reasons.index)
            for observe in on_rows:
                observe(frame)
            report = validate_frame(frame, cfg.data, cfg.expectations, docs_dir=docs_dir)
            engine = GX_ENGINE
        else:
            checks = ChunkedValidation(suite_for(cfg), what=f"{raw_file(cfg)} (more than data.in_memory_rows="
                                                            f"{limit} rows)")
            rows, columns = 0, []
            for chunk in _drain(head, chunks):
                columns = columns or [str(c) for c in chunk.columns]
                rows += len(chunk)
                reasons = checks.feed(chunk, quarantine=writer is not None)
                if reasons is not None:
                    writer.write(chunk.loc[reasons.index], reasons)
                    chunk = chunk.drop(index=reasons.index)
                for observe in on_rows:
                    observe(chunk)
            report = checks.report()
            engine = CHUNKED_ENGINE
        summary = None
        if writer is not None:
            held, path = writer.rows, writer.close(columns)
            writer = None
            summary = {"file": path.name, "rows": held, "md5": io.file_md5(path),
                       "by_expectation": checks.quarantined()}
    finally:
        if writer is not None:
            writer.close([])
    return Outcome(report, rows, engine, summary)


def _drain(head: list[pd.DataFrame], rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks already read, then the others; each read chunk is let go once handed out."""
    while head:
        yield head.pop(0)
    yield from rest
