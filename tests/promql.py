"""A PromQL parser and Prometheus rule-file checks for the tests, since promtool (a Go binary) is not installed.

`parse(expr)` parses the PromQL grammar (selectors with matchers, range and subquery selectors, offset,
function calls and aggregations with by/without, binary operators with bool/on/ignoring/group_*,
precedence as Prometheus has it) and returns the metric names it selects; it raises PromQLError on
anything Prometheus's parser would refuse among these: an unknown function, a range vector where an
instant vector is expected (`rate(x)`), an unbalanced bracket, a bad matcher, duration or regex.
`check_rule_file(doc)` applies what promtool's rulefmt checks to a parsed rule file: groups with unique
names, each rule either `record` or `alert`, a parsable expr, a valid `for` duration, label and
annotation names, and templates whose {{ }} are balanced.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "prometheus" / "maas-alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "maas-dashboard.json"
FUNCTIONS_RANGE = {  # take a range vector (matrix)
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "predict_linear",
    "holt_winters", "double_exponential_smoothing", "absent_over_time", "present_over_time",
    *(f"{a}_over_time" for a in ("avg", "min", "max", "sum", "count", "quantile", "stddev", "stdvar", "last", "mad")),
}
FUNCTIONS_INSTANT = {
    "abs", "absent", "ceil", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week", "day_of_year",
    "days_in_month", "exp", "floor", "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction",
    "hour", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "round", "scalar", "sgn",
    "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year",
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TOKEN = re.compile(r"""
    (?P<space>\s+) |
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![a-zA-Z_\d.])) |
    (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*) |
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
    (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*) |
    (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)
PRECEDENCE = [("or",), ("and", "unless"), ("==", "!=", ">", "<", ">=", "<="), ("+", "-"), ("*", "/", "%", "atan2"),
              ("^",)]


class PromQLError(ValueError):
    pass


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr, self.toks, self.i, self.metrics = expr, tokens(expr), 0, set()

    def peek(self, k: int = 0) -> tuple[str, str]:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tk, tv = self.peek()
        if (value is not None and tv != value) or (kind is not None and tk != kind):
            raise PromQLError(f"expected {value or kind}, got {tv or 'the end'} in {self.expr!r}")
        self.i += 1
        return tv

    def parse(self) -> str:
        kind = self.binary(0)
        if self.peek()[0] != "end":
            raise PromQLError(f"unexpected {self.peek()[1]!r} in {self.expr!r}")
        return kind

    def binary(self, level: int) -> str:
        if level == len(PRECEDENCE):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[1] in PRECEDENCE[level]:
            op = self.take()
            if self.peek()[1] == "bool":
                if op not in PRECEDENCE[2]:
                    raise PromQLError(f"bool only follows a comparison, not {op} in {self.expr!r}")
                self.take()
            if self.peek()[1] in ("on", "ignoring"):
                self.take()
                self.labels()
                if self.peek()[1] in ("group_left", "group_right"):
                    self.take()
                    if self.peek()[1] == "(":
                        self.labels()
            right = self.binary(level + 1) if op != "^" else self.binary(level)  # ^ is right-associative
            for side in (left, right):
                if side == "matrix":
                    raise PromQLError(f"a range vector can't be an operand of {op} in {self.expr!r}")
            left = "vector" if "vector" in (left, right) else "scalar"
        return left

    def unary(self) -> str:
        if self.peek()[1] in ("-", "+"):
            self.take()
        return self.postfix(self.primary())

    def postfix(self, kind: str) -> str:
        if self.peek()[1] == "[":
            self.take("[")
            self.duration()
            if self.peek()[1] == ":":  # subquery [range:step]
                self.take(":")
                if self.peek()[1] != "]":
                    self.duration()
                kind = "matrix"
            elif kind != "selector":
                raise PromQLError(f"a range [..] follows a vector selector only, in {self.expr!r}")
            else:
                kind = "matrix"
            self.take("]")
        while self.peek()[1] in ("offset", "@"):
            if self.take() == "offset":
                if self.peek()[1] == "-":
                    self.take()
                self.duration()
            else:
                self.take(kind="number")
        return "vector" if kind == "selector" else kind

    def duration(self) -> None:
        tk, tv = self.peek()
        if tk != "duration" or not DURATION.match(tv):
            raise PromQLError(f"expected a duration, got {tv!r} in {self.expr!r}")
        self.take()

    def primary(self) -> str:
        tk, tv = self.peek()
        if tk == "number":
            self.take()
            return "scalar"
        if tk == "string":
            self.take()
            return "string"
        if tv == "(":
            self.take("(")
            kind = self.binary(0)
            self.take(")")
            return kind
        if tv == "{":
            self.matchers()
            return "selector"
        if tk != "ident" or tv in KEYWORDS:
            raise PromQLError(f"unexpected {tv or 'end'} in {self.expr!r}")
        self.take()
        if tv in AGGREGATIONS:
            return self.aggregation(tv)
        if self.peek()[1] == "(":
            return self.call(tv)
        self.metrics.add(tv)
        if self.peek()[1] == "{":
            self.matchers()
        return "selector"

    def aggregation(self, name: str) -> str:
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.labels()
        self.take("(")
        args = [self.binary(0)]
        while self.peek()[1] == ",":
            self.take(",")
            args.append(self.binary(0))
        self.take(")")
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.labels()
        wanted = 2 if name in ("count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio") else 1
        if len(args) != wanted or args[-1] != "vector":
            raise PromQLError(f"{name} takes {wanted} argument(s), the last an instant vector, in {self.expr!r}")
        return "vector"

    def call(self, name: str) -> str:
        if name not in FUNCTIONS_RANGE | FUNCTIONS_INSTANT:
            raise PromQLError(f"unknown function {name} in {self.expr!r}")
        self.take("(")
        args = []
        if self.peek()[1] != ")":
            args.append(self.binary(0))
            while self.peek()[1] == ",":
                self.take(",")
                args.append(self.binary(0))
        self.take(")")
        if name in FUNCTIONS_RANGE and (not args or "matrix" not in args):
            raise PromQLError(f"{name} takes a range vector (e.g. x[5m]) in {self.expr!r}")
        if name not in FUNCTIONS_RANGE and "matrix" in args:
            raise PromQLError(f"{name} takes no range vector in {self.expr!r}")
        if name == "histogram_quantile" and (len(args) != 2 or args[0] != "scalar" or args[1] != "vector"):
            raise PromQLError(f"histogram_quantile takes (scalar, instant vector) in {self.expr!r}")
        return "scalar" if name in ("scalar", "time", "pi") else "vector"

    def labels(self) -> None:
        self.take("(")
        while self.peek()[1] != ")":
            if not NAME.match(self.take(kind="ident")):
                raise PromQLError(f"bad label name in {self.expr!r}")
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")

    def matchers(self) -> None:
        self.take("{")
        while self.peek()[1] != "}":
            label = self.take(kind="ident")
            op = self.take()
            if op not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"bad matcher operator {op!r} for {label} in {self.expr!r}")
            value = self.take(kind="string")[1:-1]
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as e:
                    raise PromQLError(f"bad regex {value!r} for {label}: {e}") from None
            if label == "__name__" and op == "=":
                self.metrics.add(value)
            if self.peek()[1] == ",":
                self.take(",")
        self.take("}")


def parse(expr: str) -> set[str]:
    """The metric names `expr` selects; PromQLError if it is not valid PromQL (the subset above)."""
    if not isinstance(expr, str) or not expr.strip():
        raise PromQLError("an empty expression")
    p = _Parser(expr)
    p.parse()
    return p.metrics


def _check_template(where: str, text: str) -> None:
    if text.count("{{") != text.count("}}") or re.search(r"\{\{[^}]*\{\{", text):
        raise PromQLError(f"{where}: unbalanced template braces in {text!r}")


def check_rule_file(doc) -> set[str]:
    """What promtool's rulefmt checks, on a loaded rule file; the metric names its expressions select."""
    if not isinstance(doc, dict) or set(doc) - {"groups"} or not isinstance(doc.get("groups"), list):
        raise PromQLError("a rule file is {groups: [...]} and nothing else")
    names, metrics = set(), set()
    for g in doc["groups"]:
        if not isinstance(g, dict) or set(g) - {"name", "interval", "limit", "rules", "query_offset", "labels"}:
            raise PromQLError(f"group {g!r} has unknown keys")
        if not g.get("name") or g["name"] in names:
            raise PromQLError(f"group names must be present and unique: {g.get('name')!r}")
        names.add(g["name"])
        if "interval" in g and not DURATION.match(str(g["interval"])):
            raise PromQLError(f"group {g['name']}: bad interval {g['interval']!r}")
        for r in g.get("rules") or []:
            keys = set(r)
            if keys - {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}:
                raise PromQLError(f"rule {r!r} has unknown keys {keys}")
            if ("record" in r) == ("alert" in r):
                raise PromQLError(f"a rule is either a record or an alert: {r!r}")
            name = r.get("record") or r.get("alert")
            if "record" in r and not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", r["record"]):
                raise PromQLError(f"record name {r['record']!r} is not a metric name")
            if "record" in r and ("for" in r or "annotations" in r):
                raise PromQLError(f"recording rule {name}: no for or annotations")
            metrics |= parse(r.get("expr"))
            for key in ("for", "keep_firing_for"):
                if key in r and not (isinstance(r[key], str) and DURATION.match(r[key]) and r[key]):
                    raise PromQLError(f"{name}: bad {key} {r[key]!r}")
            for key in ("labels", "annotations"):
                for label, value in (r.get(key) or {}).items():
                    if not NAME.match(label) or label.startswith("__"):
                        raise PromQLError(f"{name}: bad {key} name {label!r}")
                    if not isinstance(value, str):
                        raise PromQLError(f"{name}: {key}.{label} must be a string")
                    _check_template(f"{name}: {key}.{label}", value)
    return metrics


def rule_file_metrics(path) -> set[str]:
    """The metric names a rule file's expressions select (checked as check_rule_file does)."""
    import yaml

    return check_rule_file(yaml.safe_load(Path(path).read_text()))


def dashboard_metrics(path) -> set[str]:
    """The metric names a Grafana dashboard's queries select (every panel target's expr, parsed)."""
    import json

    dashboard = json.loads(Path(path).read_text())
    return set().union(*(parse(t["expr"]) for p in dashboard["panels"] for t in p["targets"]))
