"""What a server process records about its requests, on one background thread, off the requests' path.

For every request (LogRequests, maas.serving.request_log, calls `finished`) a structured JSON line on
stdout:

    {"time": "...", "event": "request", "request_id": "3f2a...", "method": "POST", "path": "/predict",
     "status": 200, "latency_ms": 2.41, "batch_size": 1, "forward_batch": 7, "model_tag": "maas-digits:..."}

batch_size: the images (or table rows) the request sent; forward_batch: the inputs of the forward pass
that answered it (adaptive batching shares one pass between requests). A refused request's line has
`error`, its error message, and nothing of its body. Probes (/livez, /readyz, /healthz) and /metrics
scrapes get no line.

For every answered input, the drift window on /metrics (maas.serving.input_drift); for the sampled
requests, the prediction log (maas.serving.prediction_log). The event loop only appends to a bounded
queue; what doesn't fit (the disk or stdout stalled) is dropped and counted
(maas_recorder_dropped_total), never waited for.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from maas.errors import ConfigError
from maas.serving import metrics
from maas.serving.input_drift import DriftWindow
from maas.serving.prediction_log import ENV_DIR, LogFile, LogSettings, finite, timestamp

logger = logging.getLogger("maas.serving")
WARN_EVERY_S = 60.0  # at most one warning a minute per kind of item that fails to be recorded
QUEUE_SIZE = 10_000  # requests' worth of work waiting for the thread (a stalled disk costs memory up to this)
_STOP = object()


@dataclass(slots=True)
class RequestInfo:
    """One request, as LogRequests and the API fill it in (request.state[REQUEST])."""

    id: str
    started: float                      # time.perf_counter() when it arrived
    time: float                         # time.time() when it arrived
    batch_size: int | None = None       # inputs it sent (answered requests)
    forward_batch: int | None = None    # inputs of the forward pass that answered it
    answer: tuple | None = None         # (rows, classes, proba, sampled), set by `answered`


class Recorder:
    def __init__(self, *, model_tag: str, log: LogSettings, field: str, to_inputs: Callable[[np.ndarray], list],
                 drift: DriftWindow | None, out=None) -> None:
        self.model_tag, self.log, self.field, self.to_inputs, self.drift = model_tag, log, field, to_inputs, drift
        self.out = out or sys.stdout
        try:
            self.file = LogFile(log.dir, log.max_file_bytes, log.max_files) if log.on else None
        except OSError as e:
            raise ConfigError(f"cannot write the prediction log's folder {log.dir} ({e}): serve.prediction_log.dir "
                              f"or {ENV_DIR}") from None
        self._warned: dict[str, float] = {}
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="maas-recorder", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a server stopped cleanly leaves its log file closed, every line in it

    def _sampled(self) -> bool:
        return self.file is not None and random.random() < self.log.sample

    # On the event loop: cheap, and never waits.
    def answered(self, info: RequestInfo | None, rows: np.ndarray, classes: list[int], proba: np.ndarray) -> None:
        answer = (rows, classes, proba, self._sampled())
        if info is None:  # called without LogRequests around it: no request line, the rest as usual
            self._put(("answered", None, answer), "inputs")
        else:
            info.batch_size, info.answer = len(rows), answer

    def finished(self, info: RequestInfo, method: str, path: str, status: int, error: str | None,
                 predict: bool) -> None:
        latency_ms = (time.perf_counter() - info.started) * 1000
        refused_sampled = predict and 400 <= status < 500 and self._sampled()
        self._put(("request", info, (method, path, status, error, latency_ms, refused_sampled)), "request_line")

    def _put(self, item, what: str) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            metrics.count_dropped(what, "queue_full")

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
        if self.file is not None and not self._thread.is_alive():
            self.file.close()

    # On the thread.
    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < 1000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            self._handle([item for item in items if item is not _STOP])
            if stop:
                return

    def _handle(self, items: list) -> None:
        lines, records, inputs = [], [], []
        for kind, info, data in items:
            answer = data if kind == "answered" else info.answer
            if kind == "request":
                lines.append(self._request_line(info, *data[:5]))
                method, path, status, error, _, refused_sampled = data
                if refused_sampled:
                    records.append({"time": timestamp(info.time), "request_id": info.id, "model_tag": self.model_tag,
                                    "status": status, "sample": self.log.sample, "error": error})
            if answer is not None:
                rows, classes, proba, sampled = answer
                inputs.append((rows, classes))
                if sampled:
                    records.append(self._answered_record(info, rows, classes, proba))
        self._guard("request_line", len(lines), self._write_lines, lines)
        self._guard("prediction", len(records), self._write_records, records)
        self._guard("inputs", len(inputs), self._count_inputs, inputs)

    def _guard(self, what: str, n: int, fn, items) -> None:
        """Run one kind of work; a failure (a full disk, a closed stdout) drops that work, never the thread."""
        if not n:
            return
        try:
            fn(items)
        except Exception as e:  # noqa: BLE001: the thread outlives any one failure, counted
            metrics.count_dropped(what, "error", n)
            if time.monotonic() - self._warned.get(what, -WARN_EVERY_S) >= WARN_EVERY_S:  # a full disk fails on and on
                self._warned[what] = time.monotonic()
                logger.warning("maas recorder: %d %s item(s) not recorded (maas_recorder_dropped_total counts them "
                               "all): %s: %s", n, what, type(e).__name__, e)

    def _request_line(self, info: RequestInfo, method: str, path: str, status: int, error: str | None,
                      latency_ms: float) -> str:
        line: dict[str, Any] = {"time": timestamp(info.time), "event": "request", "request_id": info.id,
                                "method": method, "path": path, "status": status,
                                "latency_ms": round(latency_ms, 3)}
        if info.batch_size is not None:
            line |= {"batch_size": info.batch_size, "forward_batch": info.forward_batch}
        line["model_tag"] = self.model_tag
        if error is not None:
            line["error"] = error
        return json.dumps(line, separators=(",", ":"))

    def _answered_record(self, info: RequestInfo | None, rows, classes, proba) -> dict:
        return {"time": timestamp(info.time if info else time.time()), "request_id": info.id if info else None,
                "model_tag": self.model_tag, "status": 200, "sample": self.log.sample,
                self.field: self.to_inputs(rows), "classes": list(classes),
                "probabilities": np.asarray(proba, np.float64).round(6).tolist()}

    def _write_lines(self, lines: list[str]) -> None:
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()

    def _write_records(self, records: list[dict]) -> None:
        self.file.write([json.dumps(r, separators=(",", ":")) for r in records])

    def _count_inputs(self, inputs: list) -> None:
        if self.drift is None:
            return
        self.drift.add(np.concatenate([rows for rows, _ in inputs]), [c for _, classes in inputs for c in classes])


def image_inputs(shape: tuple[int, ...], integer: bool) -> Callable[[np.ndarray], list]:
    """Checked image rows -> the images as a client sends them ([N, H, W], or [N, C, H, W] for C > 1)."""
    image = tuple(shape[1:]) if shape[0] == 1 else tuple(shape)

    def to_inputs(rows: np.ndarray) -> list:
        images = rows.reshape(len(rows), *image)
        return (images.astype(np.int64) if integer else images.astype(np.float64)).tolist()

    return to_inputs


def table_inputs(frame: Callable) -> Callable[[np.ndarray], list]:
    """Checked table rows -> the rows as a client sends them ({column: value}, null where missing)."""
    def to_inputs(rows: np.ndarray) -> list:
        table = frame(rows)
        return [dict(zip(table.columns, finite(values))) for values in table.itertuples(index=False, name=None)]

    return to_inputs


def start(root: Path, *, model_tag: str, spec, drift_window: int, table: bool) -> Recorder:
    """The recorder of a server process serving the model at `root`: its prediction log as the model's
    serve.json and the environment say, its drift window over the model's training profile."""
    with open(Path(root) / "serve.json", encoding="utf-8") as f:
        log = LogSettings.from_mapping(json.load(f).get("prediction_log"))
    if log.on and not Path(log.dir).is_absolute():
        # BentoML runs the service in the Bento's own folder, where a relative path would land in the store.
        raise ConfigError(f"the prediction log's folder {log.dir!r} (serve.prediction_log.dir or {ENV_DIR}) is "
                          "relative, and the server runs in the Bento's folder: give an absolute path (`maas serve` "
                          "resolves a relative one against where it is typed, or the project root for the config's)")
    metrics.start_monitoring()
    frame = spec.frame if table else None
    drift = DriftWindow.for_model(root, drift_window, frame, metrics.publish_drift)
    to_inputs = table_inputs(spec.frame) if table else image_inputs(spec.shape, spec.dtype == "int")
    recorder = Recorder(model_tag=model_tag, log=log, field=spec.field, to_inputs=to_inputs, drift=drift)
    if log.on:
        print(f"maas: prediction log: {log.sample:.0%} of requests to {log.dir} "
              f"(files of up to {log.max_file_bytes} bytes, {log.max_files} kept)", flush=True)
    return recorder
