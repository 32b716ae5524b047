"""The stage registry: every stage, in pipeline order.

`dvc.yaml` and the Prefect flow are both derived from it. It lives apart from `maas.stages` so that a
stage module, which imports `maas.stages` for `Stage`, doesn't import every other stage with it.
"""

from __future__ import annotations

import importlib

from maas.errors import ConfigError
from maas.stages import Stage

NAMES = ("validate", "preprocess", "train", "evaluate", "compress", "package")  # each is maas.stages.<name>


def all_stages() -> list[Stage]:
    return [get(name) for name in NAMES]


def get(name: str) -> Stage:
    """The stage `name`, importing its module only: a stage process loads no other stage's code."""
    if name not in NAMES:
        raise ConfigError(f"no stage named {name!r}; stages are: {', '.join(NAMES)}")
    return importlib.import_module(f"maas.stages.{name}").STAGE
