"""The drift gauges on /metrics: the served inputs and predictions against the model's training profile.

The Bento's model holds the profile of its training data (profile.json, maas.data.profile). Every
answered input is counted into that profile's bins (maas.validation.drift.DriftCheck, the counting and
statistics validate uses), window by window of `serve.drift_window` inputs; when a window is full its
drift is published and a new window starts:

    maas_input_drift{statistic="psi"}      the largest per-feature PSI of the last full window
    maas_input_drift{statistic="ks"}       the largest per-feature KS distance
    maas_prediction_class_shift{statistic="psi"}  the predicted classes' shares vs the training labels'
    maas_drift_window_inputs               inputs in that window (0: no window full yet)
    maas_drift_windows_total               windows completed so far

NaN until the first window is full (an alert rule comparing NaN is never true). Counting happens on
the recorder's thread (maas.serving.recorder), off the requests' path. A model packaged without a
profile (by an older maas) publishes NaN.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from maas.data.profile import PROFILE_FILE, load_profile, pixel_order
from maas.validation.drift import DriftCheck, class_shift

# Not judged here: alert rules compare the gauges (monitoring/prometheus/maas-alerts.yml).
LIMITS = {"method": "psi", "warn": None, "fail": None, "min_rows": 0}


class DriftWindow:
    """Counts inputs (checked rows) and predicted classes; calls `publish(summary)` at each full window."""

    def __init__(self, profile: dict | None, window: int, frame: Callable | None,
                 publish: Callable[[dict], None]) -> None:
        # frame: a table's checked rows -> the raw DataFrame DriftCheck reads; None for images, whose rows
        # are the profile's pixel columns already.
        self.profile, self.window, self.frame, self.publish = profile, window, frame, publish
        self._start()

    @classmethod
    def for_model(cls, root: Path, window: int, frame: Callable | None,
                  publish: Callable[[dict], None]) -> "DriftWindow":
        path = Path(root) / PROFILE_FILE
        return cls(load_profile(path) if path.exists() else None, window, frame, publish)

    def _start(self) -> None:
        self.classes: Counter = Counter()
        if not self.profile:
            self.check = None
            return
        # An image's rows are its pixels in input order; a table's are matched by column name.
        columns = list(self.profile["columns"]) if self.frame else pixel_order(self.profile)
        self.check = DriftCheck(self.profile, columns, LIMITS)

    def add(self, rows: np.ndarray, classes: list[int]) -> None:
        if self.check is None:
            return
        start = 0
        while start < len(rows):  # fill the window, publish it, go on with the rest
            take = min(len(rows) - start, self.window - self.check.rows)
            part = rows[start:start + take]
            self.check.update(self.frame(part)) if self.frame else self.check.update_values(part)
            self.classes.update(str(c) for c in classes[start:start + take])
            start += take
            if self.check.rows >= self.window:
                self.publish(self.summary())
                self._start()

    def summary(self) -> dict:
        record = self.check.finish()
        worst = {s: max((c[s] for c in record["columns"].values()), default=float("nan")) for s in ("psi", "ks")}
        shift = (class_shift(self.profile["classes"], self.classes, self.profile["rows"])
                 if self.profile.get("classes") else None)
        return {"inputs": record["rows"], "psi": worst["psi"], "ks": worst["ks"],
                "class_psi": shift["psi"] if shift else float("nan")}
