"""The prediction log: a sample of /predict requests as JSON lines in a folder, for `maas monitor`.

On when the config names a folder (`serve.prediction_log.dir`, in the Bento's serve.json) or the
server's environment does (MAAS_PREDICTION_LOG_DIR, which wins); MAAS_PREDICTION_LOG_SAMPLE overrides
`serve.prediction_log.sample`, the share of requests logged (each drawn at random). One line per
sampled request:

    {"time": "2025-01-01T12:00:00.123+00:00", "request_id": "...", "model_tag": "maas-digits:...",
     "status": 200, "sample": 0.1, "images": [[[0, 0, 5, ...], ...]], "classes": [0], "probabilities": [[...]]}
    {"time": ..., "request_id": ..., "model_tag": ..., "status": 400, "sample": 0.1, "error": "images[0] ..."}

An answered request carries its raw inputs as the client sent them (`images`, or a table's `rows` of
{column: value}) and the answer. A refused request (any 4xx: a bad body, no key, too large, too slow)
carries its status and its error message, never its body: what a client sends that the model can't
take is not the model's data, and may be anything.

Each server process appends to a file of its own, `predictions-<opened UTC>-<pid>-<n>.jsonl.open`;
at `max_file_bytes` the file is renamed (atomically) to `....jsonl` and a new one opened, and of
the closed files the oldest beyond `max_files` are deleted. A reader takes both kinds; a server
that was killed may leave an open file whose last line is cut short, which `read_log` skips.
The writing happens on a background thread (maas.serving.recorder), never on a request's path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from maas.errors import ArtifactError, ConfigError

ENV_DIR, ENV_SAMPLE = "MAAS_PREDICTION_LOG_DIR", "MAAS_PREDICTION_LOG_SAMPLE"
PREFIX, CLOSED, OPEN = "predictions-", ".jsonl", ".jsonl.open"


@dataclass(frozen=True)
class LogSettings:
    dir: str | None = None            # the sink: a folder on the serving host; None: no log
    sample: float = 0.1               # the share of requests logged
    max_file_bytes: int = 16 << 20    # a file is closed (renamed) at this size
    max_files: int = 100              # closed files kept in the folder; older ones are deleted

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ,
                     where: str = "serve.prediction_log") -> "LogSettings":
        """`values` (serve.prediction_log) checked, then the environment's overrides, checked the same way."""
        values = dict(values or {})
        unknown = sorted(values.keys() - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{where} has no key {', '.join(unknown)}; its keys are "
                              f"{', '.join(f.name for f in fields(cls))}")
        merged = {**{f.name: f.default for f in fields(cls)}, **values}
        said = {name: f"{where}.{name}" for name in merged}
        if (raw := environ.get(ENV_DIR)) is not None:
            merged["dir"], said["dir"] = raw, ENV_DIR
        if (raw := environ.get(ENV_SAMPLE)) is not None:
            merged["sample"], said["sample"] = _number(ENV_SAMPLE, raw), ENV_SAMPLE
        folder = merged["dir"]
        if folder is not None and (not isinstance(folder, str) or not folder.strip()):
            raise ConfigError(f"{said['dir']}={folder!r} must be a folder path (or null: no prediction log)")
        sample = merged["sample"]
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 <= sample <= 1:
            raise ConfigError(f"{said['sample']}={sample!r} must be a number in [0, 1] (the share of requests logged)")
        for name, low in (("max_file_bytes", 1024), ("max_files", 1)):
            value = merged[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{said[name]}={value!r} must be a whole number >= {low}")
        return cls(dir=folder or None, sample=float(sample), max_file_bytes=merged["max_file_bytes"],
                   max_files=merged["max_files"])

    @property
    def on(self) -> bool:
        return self.dir is not None and self.sample > 0


def _number(key: str, raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} must be a number in [0, 1] (the share of requests logged)") from None


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


class LogFile:
    """Appends lines to this process's open file in `folder`, rotating by size. One writer per process
    (the recorder's thread): nothing here is locked."""

    def __init__(self, folder: str | Path, max_file_bytes: int, max_files: int) -> None:
        self.folder, self.max_bytes, self.max_files = Path(folder), max_file_bytes, max_files
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._seq = 0

    def write(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        if self._file is not None and self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        if self._file is None:
            self._open()
        self._file.write(data)
        self._file.flush()  # readers (maas monitor) see every line the thread has handled
        self._size += len(data)

    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        while True:  # a restarted server may have this pid again (a container's): never reuse a name
            self._seq += 1
            self._path = self.folder / f"{PREFIX}{stamp}-{os.getpid()}-{self._seq:04d}{OPEN}"
            if not self._path.exists() and not self._path.with_name(self._path.name[:-len(OPEN)] + CLOSED).exists():
                break
        self._file = open(self._path, "ab")
        self._size = self._path.stat().st_size

    def rotate(self) -> None:
        """Close the open file and give it its closed name (one rename: a reader sees it whole under one
        name or the other), then delete the oldest closed files beyond max_files."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        os.replace(self._path, self._path.with_name(self._path.name[:-len(OPEN)] + CLOSED))
        closed = sorted(self.folder.glob(f"{PREFIX}*{CLOSED}"))  # named by opening time: oldest first
        for old in closed[:max(len(closed) - self.max_files, 0)]:
            old.unlink(missing_ok=True)  # another worker may have deleted it first

    close = rotate


def log_files(folder: str | Path) -> list[Path]:
    """The log's files, closed and open, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder: point `maas monitor` at the server's prediction log "
                            f"(serve.prediction_log.dir or {ENV_DIR})")
    return sorted([*folder.glob(f"{PREFIX}*{CLOSED}"), *folder.glob(f"{PREFIX}*{OPEN}")], key=lambda p: p.name)


@dataclass
class LogRead:
    files: int = 0
    unreadable_lines: int = 0


def read_log(folder: str | Path, since: datetime | None = None, stats: LogRead | None = None) -> Iterator[dict]:
    """Every record in the log (at or after `since`), file by file. A line that is not a JSON object (the
    cut-short end of a killed server's file) is skipped and counted in `stats`."""
    stats = stats if stats is not None else LogRead()
    for path in log_files(folder):
        if since is not None and datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) < since:
            continue  # last written before the window opened
        stats.files += 1
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    stats.unreadable_lines += 1
                    continue
                if not isinstance(record, dict) or "status" not in record or "time" not in record:
                    stats.unreadable_lines += 1
                    continue
                if since is not None and _parse_time(record["time"]) < since:
                    continue
                yield record


def _parse_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def finite(values: list) -> list:
    """JSON has no NaN: a missing table value (NaN in the checked rows) is written as null."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]
