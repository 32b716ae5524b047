"""Fuzz /predict from the service's own OpenAPI document (schemathesis), against the session's `maas serve`.

Two runs. The first, of fixed size: the documented example, then boundary cases of every documented
constraint and a violation of each (schemathesis's coverage phase: a string for a pixel, a missing
or unknown field, a ragged image, a method /predict doesn't take, ...). The second, bounded in time
(FUZZ_S, --max-time): random bodies, both valid and malformed by the document, for as long as the
budget lasts (about 100 cases on an idle machine, fewer under load). Every answer is checked with all
of schemathesis's default checks: no 5xx; each response's status, content type and body as
documented (an error is the ErrorResponse shape); a schema-valid request accepted, a schema-invalid
one refused. What it found when first run, now fixed in serving/openapi.py: the document let a
request leave out the body, or add fields of its own, both of which the service refuses with 400.

The runs' own reports give the figures (cases generated, statuses answered), and the server's
/metrics must count no 5xx answer to /predict either: the server's word, beside the fuzzer's. The
test prints them (`pytest -s`).

It runs schemathesis's command line, not its pytest plugin: the plugin (4.32.5) fails under
pytest 9 (`'Function' object has no attribute '_nodeid'`). A failure prints each request that
failed as a curl command.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import httpx
import pytest

from conftest import BIN

pytestmark = pytest.mark.slow
FUZZ_S = 5  # the random phase's time budget, on top of the fixed-size first run (~4 s)


def predict_answers(url: str) -> Counter:
    """How many /predict requests the server has answered, by status code, by its own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "bentoml_service_request_total" and s.labels.get("endpoint") == "/predict":
                counts[int(s.labels["http_response_code"])] += s.value
    return counts


def schemathesis(served, where, *options: str) -> tuple[dict, Counter]:
    """Run `st run` on /predict with `options`; its JSON report and the statuses of the requests it sent."""
    # Sent with every request: the session server's API key (any other header goes in this dict too).
    headers = [arg for name, value in served["headers"].items() for arg in ("--header", f"{name}: {value}")]
    where.mkdir()
    out = subprocess.run([str(BIN / "st"), "run", f"{served['url']}/docs.json", "--include-path", "/predict",
                          "--include-method", "POST", "--seed", "10", "--request-timeout", "30", *options,
                          "--report", "json,har", "--report-json-path", "run.json", "--report-har-path", "requests.har",
                          *headers], cwd=where, capture_output=True, text=True, timeout=300)  # its cache goes there too
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "No issues found" in out.stdout and " passed" in out.stdout, out.stdout[-2000:]
    run = json.loads((where / "run.json").read_text())
    assert run["test_cases"]["with_failures"] == 0 and run["errors"] == [], run
    requests = json.loads((where / "requests.har").read_text())["log"]["entries"]
    return run, Counter(e["response"]["status"] for e in requests)


def test_predict_answers_as_its_openapi_document_says_and_never_with_a_5xx(served, tmp_path):
    before = predict_answers(served["url"])
    fixed, fixed_statuses = schemathesis(served, tmp_path / "coverage", "--phases", "examples,coverage",
                                         "--max-examples", "60")
    fuzzed, fuzzed_statuses = schemathesis(served, tmp_path / "fuzzing", "--phases", "fuzzing",
                                           "--max-time", str(FUZZ_S))
    answered = predict_answers(served["url"])
    answered.subtract(before)
    statuses = fixed_statuses + fuzzed_statuses
    server_5xx = sum(n for code, n in answered.items() if code >= 500)
    print(f"fuzz /predict: {fixed['test_cases']['generated']} coverage cases + {fuzzed['test_cases']['generated']} "
          f"random cases in {FUZZ_S} s; statuses {dict(sorted(statuses.items()))}; the server's /metrics: "
          f"{dict(sorted((+answered).items()))}, 5xx = {server_5xx:g}")
    assert fixed["phases"]["coverage"]["status"] == fuzzed["phases"]["fuzzing"]["status"] == "success"
    assert fixed["test_cases"]["generated"] >= 40 and fixed_statuses[400] >= 30  # each constraint violated, refused
    assert fuzzed["test_cases"]["generated"] >= 10
    assert not [s for s in statuses if s >= 500]
    assert server_5xx == 0 and answered[200] >= statuses[200] and answered[400] >= statuses[400]
