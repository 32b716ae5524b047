"""API keys and their roles over real HTTP, on the session's server (`served`, keyed by a keys file whose
key has the admin role: conftest.py).

Tests that add or revoke keys use their own, so the session's key keeps working for every other test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import httpx
import pytest

from conftest import BIN, free_port, own_store, start, stop

pytestmark = pytest.mark.slow

IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0]] * 8
MISSING = {"error": "this route needs an API key: send the header 'Authorization: Bearer <key>'"}
INVALID = {"error": "the API key is not valid"}


def predict(served, key: str | None, body=None) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{served['url']}/predict", json={"images": [IMAGE]} if body is None else body,
                      headers=headers, timeout=30)


def maas_api_key(*argv: str) -> str:
    """The real CLI, as an operator runs it beside a running server; its stdout."""
    return subprocess.run([str(BIN / "maas"), "api-key", *argv], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_no_key_gets_401_before_the_body_is_parsed(served):
    r = predict(served, None, body={"pictures": "not even images"})  # a 400 if it were parsed
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == MISSING  # the one error shape, and nothing about the model


@pytest.mark.parametrize("authorization", ["Bearer wrong-key-0123456789abcdef", "Basic dXNlcjpwYXNz", "Bearer", "",
                                          "{key}", "Bearer {key}x"])
def test_a_wrong_or_malformed_key_gets_401(served, authorization):
    r = httpx.post(f"{served['url']}/predict", json={"images": [IMAGE]}, timeout=30,
                   headers={"Authorization": authorization.format(key=served["key"])})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() in (MISSING, INVALID)


def test_every_route_but_health_and_docs_is_keyed(served):
    for path in ("/schema.json", "/metadata", "/no-such-route"):
        r = httpx.get(served["url"] + path, timeout=10)
        assert r.status_code == 401 and r.json() == MISSING, (path, r.status_code, r.text)


def test_the_right_key_predicts(served):
    r = predict(served, served["key"])
    assert r.status_code == 200, r.text
    assert len(r.json()["classes"]) == 1
    lower = httpx.post(f"{served['url']}/predict", json={"images": [IMAGE]}, timeout=30,
                       headers={"authorization": f"bearer {served['key']}"})  # scheme and name are case-insensitive
    assert lower.status_code == 200, lower.text


def test_health_readiness_docs_and_metrics_are_open(served):
    for path in ("/livez", "/readyz", "/healthz", "/", "/docs.json", "/static_content/swagger-ui.css", "/metrics"):
        r = httpx.get(served["url"] + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert "bentoml_service_request_total" in httpx.get(served["url"] + "/metrics", timeout=10).text


def test_a_key_made_while_serving_works_at_once_and_a_revoked_one_stops(served):
    keys_file = str(served["keys_file"])
    key = maas_api_key("new", "--file", keys_file, "--name", "added-while-serving")
    assert predict(served, key).status_code == 200
    maas_api_key("revoke", "--file", keys_file, "added-while-serving")
    r = predict(served, key)
    assert r.status_code == 401 and r.json() == INVALID
    assert predict(served, served["key"]).status_code == 200


def test_deleting_a_keys_line_by_hand_revokes_it(served):
    keys_file = served["keys_file"]
    key = maas_api_key("new", "--file", str(keys_file))
    assert predict(served, key).status_code == 200
    digest = hashlib.sha256(key.encode()).hexdigest()
    lines = keys_file.read_text().splitlines(keepends=True)
    with open(keys_file, "w") as f:  # in place, as an editor without atomic saves does
        f.writelines(line for line in lines if digest not in line)
    assert predict(served, key).status_code == 401
    assert predict(served, served["key"]).status_code == 200


def get(served, path: str, key: str) -> httpx.Response:
    return httpx.get(served["url"] + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)


FORBIDDEN = {"error": "this route needs an API key with the admin role; this key has the predict role"}


def forbidden_count(served) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{served['url']}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "maas_rejected_requests_total" and s.labels.get("reason") == "forbidden")


def test_a_predict_key_predicts_and_gets_403_naming_the_admin_role_elsewhere(served):
    keys_file = str(served["keys_file"])
    key = maas_api_key("new", "--file", keys_file, "--name", "role-predict")  # predict: the default role
    try:
        before = forbidden_count(served)
        assert predict(served, key).status_code == 200
        for path in ("/metadata", "/no-such-route"):
            r = get(served, path, key)
            assert r.status_code == 403 and r.json() == FORBIDDEN, (path, r.status_code, r.text)
            assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="admin"'
        assert get(served, "/schema.json", key).status_code == 200
        assert forbidden_count(served) == before + 2
    finally:
        maas_api_key("revoke", "--file", keys_file, "role-predict")


def test_an_admin_key_reads_the_metadata_and_predicts_until_revoked(served):
    keys_file = str(served["keys_file"])
    key = maas_api_key("new", "--file", keys_file, "--name", "role-admin", "--role", "admin")
    r = get(served, "/metadata", key)
    assert r.status_code == 200 and r.json()["bento_tag"] == served["bento_tag"]
    assert predict(served, key).status_code == 200  # admin may do what predict may
    maas_api_key("revoke", "--file", keys_file, "role-admin")
    assert get(served, "/metadata", key).status_code == 401 and predict(served, key).status_code == 401


def test_a_keys_role_changed_in_the_file_holds_from_the_next_request(served):
    """Rotation without a restart or a rebuild: an operator edits a line's role by hand."""
    keys_file = served["keys_file"]
    key = maas_api_key("new", "--file", str(keys_file), "--name", "role-edited")
    digest = hashlib.sha256(key.encode()).hexdigest()
    try:
        assert get(served, "/metadata", key).status_code == 403
        keys_file.write_text(keys_file.read_text().replace(f"{digest}  predict", f"{digest}  admin"))
        assert get(served, "/metadata", key).status_code == 200
        # A line without a role (as keys files were written before roles) is predict's.
        keys_file.write_text(keys_file.read_text().replace(f"{digest}  admin", digest))
        assert get(served, "/metadata", key).status_code == 403 and predict(served, key).status_code == 200
    finally:
        maas_api_key("revoke", "--file", str(keys_file), "role-edited")


def test_a_keys_file_that_breaks_keeps_the_last_good_keys(served):
    keys_file, log = served["keys_file"], served["log"]
    good = keys_file.read_text()
    offset = log.stat().st_size
    try:
        keys_file.write_text(good + "this is not a hash\n")
        assert predict(served, served["key"]).status_code == 200  # neither open nor locked out
        assert predict(served, None).status_code == 401
    finally:
        keys_file.write_text(good)
    assert predict(served, served["key"]).status_code == 200

    def error_lines() -> list[str]:
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            return [line for line in f.read().splitlines() if "[ERROR]" in line]

    deadline = time.monotonic() + 15  # the server's log may reach the file after its answer
    while time.monotonic() < deadline and not error_lines():
        time.sleep(0.2)
    lines = error_lines()
    assert len(lines) == 1 and f"MAAS_API_KEYS_FILE={keys_file}: line" in lines[0], lines


def test_a_malformed_keys_file_stops_the_server_naming_the_file(served, tmp_path):
    """Told to require keys it can't read, the server must not start open: it exits, naming the file."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("a-plain-key-where-its-hash-should-be\n")
    log = tmp_path / "serve.log"
    proc = start([str(BIN / "bentoml"), "serve", served["bento_tag"], "--port", str(free_port())], log,
                 env={**os.environ, "BENTOML_HOME": str(own_store(served, tmp_path / "bentoml")),
                      "MAAS_API_KEYS_FILE": str(keys_file)})
    try:
        proc.wait(timeout=120)
    finally:
        stop(proc)
    text = log.read_text()
    assert proc.returncode != 0, text[-2000:]
    assert f"MAAS_API_KEYS_FILE={keys_file}: line 1 is not a key hash" in text, text[-2000:]
    assert "a-plain-key-where-its-hash-should-be" not in text
