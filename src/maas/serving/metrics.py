"""The service's own Prometheus metrics, served on /metrics beside BentoML's.

    maas_model_info{model_tag="maas-digits:<v>", bento_tag="maas-digits:<v>"} 1
    maas_predictions_total{class="3"}             images answered with class 3
    maas_rejected_requests_total{reason="pixel"}  requests refused, by REASONS
    maas_batch_requests_bucket{le="8"}            forward passes that served at most 8 requests
    maas_batch_images_bucket{le="64"}             forward passes over at most 64 images
    maas_input_drift{statistic="psi"}             the worst feature's drift in the last window of inputs
    maas_prediction_class_shift                   the predicted classes' PSI vs the training labels' shares
    maas_drift_window_inputs                      inputs in that window (maas.serving.input_drift)
    maas_drift_windows_total                      windows completed (each updates the drift gauges)
    maas_recorder_dropped_total{item="prediction"}  request lines, log records or inputs not recorded

Every label takes values from a fixed set (the model's classes, REASONS, one model),
so the number of series is bounded whatever clients send.

BentoML runs its workers with prometheus_client in multiprocess mode: each worker
writes its counts to files in PROMETHEUS_MULTIPROC_DIR, and /metrics sums them.
prometheus_client picks that mode when it is first imported, so it is imported
here on first use (in the worker), never when the service module is imported.
(`bentoml.metrics` did the same, and is deprecated in favour of this.)
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from types import SimpleNamespace
from typing import Iterable, Literal, get_args

# Why a request was refused. Others add theirs here: a reason outside this set is a bug, not a new series.
# A table model's requests ({"rows": [...]}) use the same reasons: its rows are the images.
Reason = Literal[
    "not_json",          # the body is not JSON
    "bad_field",         # not {"images": [...]}: no images, unknown fields, images not a non-empty list
                         # (tables: no rows, rows not a non-empty list, a row not an object)
    "too_many_images",   # more than max_request_images (tables: rows)
    "shape",             # an image of the wrong shape, ragged or unlike the others (tables: a row with a
                         # missing or unknown column)
    "pixel",             # a pixel of the wrong type or outside the raw range (tables: a value of the wrong
                         # type, a category not declared, null where missing values are not filled)
    "content_type",      # a content-type other than application/json
    "body_too_large",    # more than max_body_bytes
    "body_timeout",      # the body did not arrive within body_timeout_s
    "unauthorized",      # no or a wrong API key
    "forbidden",         # a valid API key without the role the route needs
    "other",             # a BadRequest raised without a reason
]
REASONS: tuple[str, ...] = get_args(Reason)


@cache
def _metrics() -> SimpleNamespace:
    from prometheus_client import Counter as PromCounter, Gauge, Histogram

    return SimpleNamespace(
        # livemax: one series per model whatever the number of workers, gone when they are.
        info=Gauge("maas_model_info", "The model this server answers with (value 1)",
                   ["model_tag", "bento_tag"], multiprocess_mode="livemax"),
        predictions=PromCounter("maas_predictions", "Images classified, by predicted class", ["class"]),
        rejections=PromCounter("maas_rejected_requests", "Requests refused, by reason", ["reason"]),
        # How well adaptive batching works: requests and images per shared forward pass.
        batch_requests=Histogram("maas_batch_requests", "Requests answered by one forward pass",
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, float("inf"))),
        batch_images=Histogram("maas_batch_images", "Images in one forward pass",
                               buckets=(1, 4, 16, 64, 256, 1024, float("inf"))),
    )


def start(*, model_tag: str, bento_tag: str | None, classes: Iterable[int]) -> None:
    """Publish the model's tags, and every class and reason at 0 (so rate() has a start)."""
    m = _metrics()
    m.info.labels(model_tag, bento_tag or "none").set(1)
    for c in classes:
        _class_series(c)
    for reason in REASONS:
        m.rejections.labels(reason)


def count_predictions(classes: Iterable[int]) -> None:
    """Count one prediction per element of `classes` (the class each image was answered with)."""
    # Called once per request on the event loop: a request of one image (the common case) skips the Counter.
    classes = list(classes)
    if len(classes) == 1:
        return _class_series(classes[0]).inc()
    for c, n in Counter(classes).items():
        _class_series(c).inc(n)


@cache
def _class_series(c):
    """The series of class `c`: `labels()` takes a lock and builds a key on every call; the
    classes are few and fixed (a model's), so each one's series is looked up once."""
    return _metrics().predictions.labels(str(c))


def count_rejection(reason: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"unknown rejection reason {reason!r}; add it to maas.serving.metrics.Reason")
    _metrics().rejections.labels(reason).inc()


def observe_batch(requests: int, images: int) -> None:
    m = _metrics()
    m.batch_requests.observe(requests)
    m.batch_images.observe(images)


# What the recorder's thread publishes (maas.serving.recorder, maas.serving.input_drift).
DROPPED_ITEMS = ("request_line", "prediction", "inputs")
DROPPED_REASONS = ("queue_full", "error")


@cache
def _monitoring_metrics() -> SimpleNamespace:
    from prometheus_client import Counter as PromCounter, Gauge

    # livemax: each worker's window is its own; the worst live one is what an alert should see.
    return SimpleNamespace(
        drift=Gauge("maas_input_drift", "The largest per-feature drift of the last full window of inputs vs the "
                    "training profile", ["statistic"], multiprocess_mode="livemax"),
        class_shift=Gauge("maas_prediction_class_shift", "PSI of the predicted classes' shares in the last full "
                          "window vs the training labels' shares", multiprocess_mode="livemax"),
        window=Gauge("maas_drift_window_inputs", "Inputs in the last full drift window (0: none full yet)",
                     multiprocess_mode="livemax"),
        windows=PromCounter("maas_drift_windows", "Drift windows completed (each updates the drift gauges)"),
        dropped=PromCounter("maas_recorder_dropped", "Request log lines, prediction log records or drift inputs "
                            "not recorded, by reason", ["item", "reason"]),
    )


def start_monitoring() -> None:
    """Every drift gauge at NaN (not measured yet), every dropped series at 0."""
    m = _monitoring_metrics()
    for statistic in ("psi", "ks"):
        m.drift.labels(statistic).set(float("nan"))
    m.class_shift.set(float("nan"))
    m.window.set(0)
    for item in DROPPED_ITEMS:
        for reason in DROPPED_REASONS:
            m.dropped.labels(item, reason)


def publish_drift(summary: dict) -> None:
    m = _monitoring_metrics()
    m.drift.labels("psi").set(summary["psi"])
    m.drift.labels("ks").set(summary["ks"])
    m.class_shift.set(summary["class_psi"])
    m.window.set(summary["inputs"])
    m.windows.inc()


def count_dropped(item: str, reason: str, n: int = 1) -> None:
    _monitoring_metrics().dropped.labels(item, reason).inc(n)
