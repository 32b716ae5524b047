"""The serve settings a Bento reads from its serve.json, and the MAAS_SERVE_* overrides an operator gives."""

from __future__ import annotations

import pytest

from maas.errors import ConfigError
from maas.serving.settings import ServeSettings


def test_known_keys_are_read_and_others_left_to_the_package_stage():
    s = ServeSettings.from_mapping({"max_batch_size": 8, "max_latency_ms": 2, "model_name": "x"})
    assert (s.max_batch_size, s.max_latency_ms, s.workers) == (8, 2.0, 1)


@pytest.mark.parametrize("values, named", [
    ({"max_batch_size": 0}, "serve.max_batch_size=0 must be an integer >= 1"),
    ({"max_batch_size": True}, "serve.max_batch_size=True must be an integer >= 1"),
    ({"max_latency_ms": -1}, "serve.max_latency_ms=-1 must be a number in [0, 3600]"),
    ({"metrics_require_key": "yes"}, "serve.metrics_require_key='yes' must be true or false"),
])
def test_a_bad_value_is_named(values, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        ServeSettings.from_mapping(values)


def test_environment_overrides_are_parsed_and_checked():
    base = ServeSettings.from_mapping({"max_batch_size": 64})
    s = base.with_env({"MAAS_SERVE_MAX_BATCH_SIZE": "1", "MAAS_SERVE_METRICS_REQUIRE_KEY": "true", "OTHER": "x"})
    assert (s.max_batch_size, s.metrics_require_key, base.max_batch_size) == (1, True, 64)
    with pytest.raises(ConfigError, match="MAAS_SERVE_MAX_BATCH_SIZE='abc' must be an integer >= 1"):
        base.with_env({"MAAS_SERVE_MAX_BATCH_SIZE": "abc"})
