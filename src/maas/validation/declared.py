"""Expectations a suite file declares by Great Expectations' own names, under `expect:`.

    expect:
      - expect_column_mean_to_be_between: {column: alcohol, min_value: 12.5, max_value: 13.5}
      - expect_column_values_to_match_regex: {column: code, regex: "^[A-Z]{3}$", mostly: 0.99}

Each entry is one GX 1.x expectation type (the snake_case name GX itself stores
in a suite) with its arguments. The name is looked up among the expectation
classes GX has registered, never imported from a path: a suite file is data,
not code. The entries' shape and the columns they name are checked when the
config is composed (cheap, no GX); the name and the arguments, which only GX
knows, when the suite is built (`maas stage validate`), because importing GX
costs seconds that every `maas compose` would pay.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from maas.errors import ConfigError

KEY = "expect"
# Where a built expectation came from, kept in its GX `meta` so a failure can name the entry.
META_KEY = "maas_declared"
# The arguments that name a column of the data: checked against the declared columns at compose time.
COLUMN_ARGS = ("column", "column_A", "column_B", "column_list")
GX_LIST = "https://greatexpectations.io/expectations/"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Declared:
    where: str  # expectations.expect[2]
    name: str
    args: dict[str, Any]

    def label(self) -> str:
        return f"{self.where} ({self.name})"


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def entries(exp_cfg: DictConfig) -> list[Declared]:
    """The `expect:` list, each entry checked for shape: `name: {arguments}`."""
    raw = _plain(exp_cfg.get(KEY))
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"expectations.{KEY} must be a list of `- expect_name: {{arguments}}` entries, "
                          f"got {type(raw).__name__}: {raw!r}")
    out = []
    for i, item in enumerate(raw):
        where = f"expectations.{KEY}[{i}]"
        if isinstance(item, str):  # a bare name: an expectation that takes no arguments
            item = {item: None}
        if not isinstance(item, dict) or len(item) != 1:
            keys = f" has keys {list(item)}" if isinstance(item, dict) else f" is {item!r}"
            raise ConfigError(f"{where}{keys}: each entry is one `- expect_name: {{arguments}}` (YAML: indent "
                              "the arguments under the name, or write them inline in braces)")
        ((name, args),) = item.items()
        name = str(name)
        if not _TYPE_NAME.match(name):
            if "." in name:
                hint = "a Great Expectations type name such as expect_column_values_to_be_between, never an import path"
            elif name[:1].isupper():
                hint = f"GX's type name, snake_case: {_snake(name)}"
            else:
                hint = "a Great Expectations type name: lower case, digits and underscores"
            raise ConfigError(f"{where}: {name!r} is not an expectation name; write {hint}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ConfigError(f"{where} ({name}): its arguments must be a mapping such as {{column: x}}, "
                              f"got {args!r}")
        out.append(Declared(where, name, {str(k): v for k, v in args.items()}))
    return out


def check(exp_cfg: DictConfig, data_cfg: DictConfig) -> None:
    """At compose time: the shape of `expect:`, and that each column it names is one of the data's.

    Only with `exact_columns: true`, when the data holds no other columns to expect things of."""
    declared = entries(exp_cfg)
    if not declared or not exp_cfg.get("exact_columns"):
        return
    from maas.data.sources import feature_columns

    columns = [*feature_columns(data_cfg), str(data_cfg.label_column)]
    known = set(columns)
    for d in declared:
        for arg in COLUMN_ARGS:
            value = d.args.get(arg)
            named = value if isinstance(value, list) else [value] if value is not None else []
            for col in named:
                if str(col) not in known:
                    match = difflib.get_close_matches(str(col), columns, n=1)
                    hint = f"; did you mean {match[0]!r}?" if match else ""
                    raise ConfigError(f"{d.label()}: {arg}={col!r} is not a column of the data "
                                      f"(data.features and data.label_column){hint}")


def _gx_complaint(error: Exception) -> str:
    """pydantic's errors, one per argument: GX's unions also accept a suite-parameter dict,
    whose 'not a valid dict' would only hide the message that matters."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return f"{type(error).__name__}: {error}"
    by_arg: dict[str, list[str]] = {}
    for e in errors():
        arg = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
        by_arg.setdefault(arg, []).append(e.get("msg", ""))
    parts = []
    for arg, msgs in by_arg.items():
        useful = [m for m in msgs if m != "value is not a valid dict"] or msgs
        parts.append(f"{arg}: {' or '.join(dict.fromkeys(useful))}" if arg != "__root__" else useful[0])
    return "; ".join(parts)


def build(exp_cfg: DictConfig) -> list:
    """The declared entries as GX Expectation objects (imports GX); a bad name or argument is a ConfigError."""
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    declared = entries(exp_cfg)
    if not declared:
        return []
    names = sorted(list_registered_expectation_implementations())
    built = []
    for d in declared:
        if d.name not in names:
            close = difflib.get_close_matches(d.name, names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"see {GX_LIST} for the names"
            raise ConfigError(f"{d.where}: {d.name!r} is not a Great Expectations expectation; {hint}")
        cls = get_expectation_impl(d.name)
        args = dict(d.args)
        meta = args.pop("meta", None)
        if meta is not None and not isinstance(meta, dict):
            raise ConfigError(f"{d.label()}: meta must be a mapping, got {meta!r}")
        try:
            built.append(cls(**args, meta={**(meta or {}), META_KEY: d.where}))
        except Exception as e:  # pydantic's ValidationError (a ValueError), or GX's own checks
            raise ConfigError(f"{d.label()} has bad arguments {args}: {_gx_complaint(e)}") from None
    return built
