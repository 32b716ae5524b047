"""The stage registry: every stage, in pipeline order.

`dvc.yaml` and the Prefect flow are both derived from it. It lives apart from `maas.stages` so that a
stage module, which imports `maas.stages` for `Stage`, doesn't import every other stage with it.
"""

from __future__ import annotations

from maas.errors import ConfigError
from maas.stages import Stage


def all_stages() -> list[Stage]:
    from maas.stages import compress, evaluate, package, preprocess, train, validate

    return [m.STAGE for m in (validate, preprocess, train, evaluate, compress, package)]


def get(name: str) -> Stage:
    stages = {s.name: s for s in all_stages()}
    if name not in stages:
        raise ConfigError(f"no stage named {name!r}; stages are: {', '.join(stages)}")
    return stages[name]
