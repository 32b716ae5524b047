"""The validation report's parts, the same whichever engine ran the suite (GX in memory, or chunked)."""

from __future__ import annotations

import json
from typing import Any

DETAIL_KEYS = ("observed_value", "unexpected_count", "partial_unexpected_list", "details")
# Where an expectation a suite file declared under `expect:` came from, in its GX meta (declared.py's META_KEY).
DECLARED_META = "maas_declared"


def failure_entry(expectation: str, column: str | None, result: dict | None, exception: str | None,
                  meta: dict | None = None) -> dict:
    """One failed expectation: {expectation, column, declared, details} with GX's observed value,
    unexpected count and first unexpected values, and the error when computing it raised."""
    details = {k: v for k, v in (result or {}).items() if k in DETAIL_KEYS}
    if exception:
        details["exception"] = exception
    return {"expectation": expectation, "column": column, "declared": (meta or {}).get(DECLARED_META),
            "details": jsonable(details)}


def exception_message(info: dict | None) -> str | None:
    """The error GX recorded for an expectation: at the top level, or per metric that raised."""
    if not info:
        return None
    if info.get("raised_exception"):
        return info.get("exception_message") or "raised an exception"
    nested = [v.get("exception_message") for v in info.values()
              if isinstance(v, dict) and v.get("raised_exception", True) and v.get("exception_message")]
    return "; ".join(dict.fromkeys(nested)) or None


def statistics(results: list[dict]) -> dict[str, Any]:
    """GX's validation statistics for results carrying a `success` flag."""
    evaluated = len(results)
    ok = sum(1 for r in results if r["success"])
    return {"evaluated_expectations": evaluated, "successful_expectations": ok,
            "unsuccessful_expectations": evaluated - ok,
            "success_percent": 100.0 * ok / evaluated if evaluated else None}


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
