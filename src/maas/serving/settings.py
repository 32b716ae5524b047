"""What the Bento reads from `serve` (its serve.json), checked the same way at compose time and at load.

Operators may override the batching and limits of a built Bento without
rebuilding it: MAAS_SERVE_<KEY> in the environment (e.g. MAAS_SERVE_MAX_BATCH_SIZE=1
turns batching off), checked like the config values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from maas.errors import ConfigError

ENV_PREFIX = "MAAS_SERVE_"


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 64
    max_latency_ms: float = 0.0
    max_request_images: int = 512
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    workers: int = 1
    metrics_require_key: bool = False
    drift_window: int = 1000  # inputs per window of the /metrics drift gauges (maas.serving.input_drift)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "serve") -> "ServeSettings":
        """The known keys of `values` (others, like model_name, belong to the package stage), each checked."""
        kwargs = {}
        for f in fields(cls):
            if f.name in values:
                kwargs[f.name] = _check(f"{where}.{f.name}", values[f.name], f.default)
        return cls(**kwargs)

    def with_env(self, environ: Mapping[str, str] = os.environ) -> "ServeSettings":
        """These settings with MAAS_SERVE_<KEY> overrides from the environment, checked."""
        import yaml

        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for f in fields(self):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _check(ENV_PREFIX + f.name.upper(), yaml.safe_load(raw), f.default)
        return type(self)(**values)


def _check(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} must be an integer >= 1")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ConfigError(f"{key}={value!r} must be a number in [0, 3600]")
    return float(value)
