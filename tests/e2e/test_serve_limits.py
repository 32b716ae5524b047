"""Bounded cost per request, over real HTTP against the session's `maas serve`: body size, slow and
vanished clients, and unknown paths in /metrics (issue 10, "Bounded cost").

The served fixture runs with MAAS_SERVE_BODY_TIMEOUT_S=2 (conftest), so a stalled client gets its 408
in seconds. Raw sockets stand in for the clients httpx won't imitate: one that stops mid-body, one
that leaves, one that sends headers and waits.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import SERVE_KEY
from test_serve import README_IMAGE

pytestmark = pytest.mark.slow

AUTH = f"Authorization: Bearer {SERVE_KEY}\r\n"  # the session server is keyed
PREDICT_HEAD = ("POST /predict HTTP/1.1\r\nHost: maas\r\nContent-Type: application/json\r\n" + AUTH +
                "Content-Length: {length}\r\n{extra}\r\n")


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of the one response on `sock` (read to its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def predict_counts(url: str) -> dict[tuple[str, str], float]:
    """BentoML's request counter, {(endpoint, status): count}."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts = {}
    for labels, value in re.findall(r'^\w+_request_total\{([^}]*)\} (\S+)$', text, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[fields["endpoint"], fields["http_response_code"]] = float(value)
    return counts


def log_offset(served) -> int:
    return served["log"].stat().st_size


def assert_no_server_errors(served, offset: int) -> None:
    """No 5xx in BentoML's counters, and no ERROR or traceback in the server log since `offset`."""
    errors = {k: v for k, v in predict_counts(served["url"]).items() if k[1].startswith("5") and v > 0}
    assert not errors, errors
    with open(served["log"], encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        bad = [line for line in f.read().splitlines() if "Traceback" in line or "[ERROR]" in line]
    assert not bad, "\n".join(bad)


@pytest.fixture
def limit(served) -> int:
    return served["cfg"].serve.max_body_bytes


def test_a_body_declared_over_the_limit_gets_413_before_any_of_it_is_sent(served, limit):
    offset = log_offset(served)
    with connect(served["url"]) as sock:
        sock.sendall(PREDICT_HEAD.format(length=limit + 1, extra="").encode())  # and no body at all
        status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body) == {"error": f"the body is {limit + 1} bytes; at most {limit} bytes per request"}
    # A client that waits for `100 Continue` (curl does for large bodies) is told 413 instead.
    with connect(served["url"]) as sock:
        sock.sendall(PREDICT_HEAD.format(length=100_000_000, extra="Expect: 100-continue\r\n").encode())
        status, _, body = read_response(sock)
        assert status == 413 and "100000000 bytes" in json.loads(body)["error"]
        assert closed_by_server(sock)
    assert_no_server_errors(served, offset)


def test_a_client_sending_a_body_over_the_limit_reads_the_413(served, limit):
    r = httpx.post(f"{served['url']}/predict", content=b"1" * (limit + 1), timeout=30,
                   headers={"content-type": "application/json", **served["headers"]})
    assert r.status_code == 413 and set(r.json()) == {"error"}, r.text

    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(limit * 3 // 2 // 65536):
            yield b"1" * 65536

    r = httpx.post(f"{served['url']}/predict", content=chunks(), timeout=30,
                   headers={"content-type": "application/json", **served["headers"]})
    assert r.status_code == 413, r.text
    assert r.json() == {"error": f"the body is more than {limit} bytes; at most {limit} bytes per request"}


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(served, limit):
    """The client sends just over the limit and then nothing: the 413 comes without waiting for the rest."""
    with connect(served["url"]) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: maas\r\nContent-Type: application/json\r\n" + AUTH.encode() +
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"1" * 65536
        for _ in range(limit // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, _, body = read_response(sock)
    assert status == 413 and "more than" in json.loads(body)["error"]


def test_a_chunked_body_within_the_limit_is_read_whole(served):
    text = json.dumps({"images": [README_IMAGE]}).encode()
    r = httpx.post(f"{served['url']}/predict", content=(text[i:i + 7] for i in range(0, len(text), 7)),
                   headers={"content-type": "application/json", **served["headers"]}, timeout=30)
    assert r.status_code == 200 and r.json()["classes"] == [0], r.text


def stall(url: str) -> socket.socket:
    """A client that sends its headers and part of its body, then nothing."""
    sock = connect(url)
    sock.sendall(PREDICT_HEAD.format(length=1000, extra="").encode() + b'{"images": [[[0, 0, 5')
    return sock


def test_a_client_that_stalls_mid_body_gets_408_and_is_disconnected(served):
    offset = log_offset(served)
    with stall(served["url"]) as sock:
        status, headers, body = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        timeout = served["body_timeout_s"]
        assert json.loads(body) == {"error": f"the body was not received in full within {timeout:g} s"}
        assert closed_by_server(sock)
    assert_no_server_errors(served, offset)


def test_a_client_that_leaves_mid_body_is_dropped_and_not_counted(served):
    offset = log_offset(served)
    before = predict_counts(served["url"])
    for _ in range(5):
        stall(served["url"]).close()
    time.sleep(served["body_timeout_s"] + 1)  # past the point where a client still there would have had its 408
    assert httpx.post(f"{served['url']}/predict", json={"images": [README_IMAGE]}, headers=served["headers"],
                      timeout=30).status_code == 200
    after = predict_counts(served["url"])
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert changed == {("/predict", "200"): 1}  # the marker alone: nothing for the five that left
    assert_no_server_errors(served, offset)


def test_requests_are_answered_while_slow_clients_and_a_large_body_are_in_flight(served, limit):
    offset = log_offset(served)
    stalled = [stall(served["url"]) for _ in range(20)]
    large = connect(served["url"])  # a body of the largest size taken, half sent
    large.sendall(PREDICT_HEAD.format(length=limit, extra="").encode() + b"1" * (limit // 2))
    huge_outcome = []

    def send_huge():  # 100 MB, streamed without a Content-Length
        try:
            r = httpx.post(f"{served['url']}/predict", content=(b"1" * 1_000_000 for _ in range(100)), timeout=30,
                           headers={"content-type": "application/json", **served["headers"]})
            huge_outcome.append(r.status_code)
        except httpx.TransportError as e:  # the server may close on a client sending far past the limit
            huge_outcome.append(type(e).__name__)

    huge = threading.Thread(target=send_huge)
    huge.start()
    try:
        r = httpx.post(f"{served['url']}/predict", json={"images": [README_IMAGE]}, headers=served["headers"],
                       timeout=30)
        assert r.status_code == 200 and r.json()["classes"] == [0]
        assert httpx.get(f"{served['url']}/readyz", timeout=30).status_code == 200
        huge.join(60)
        assert huge_outcome and huge_outcome[0] in (413, "ReadError", "WriteError", "RemoteProtocolError"), huge_outcome
        assert [read_response(sock)[0] for sock in stalled] == [408] * len(stalled)
        assert read_response(large)[0] == 408
    finally:
        for sock in [*stalled, large]:
            sock.close()
    assert_no_server_errors(served, offset)


def endpoint_labels(url: str) -> set[str]:
    return set(re.findall(r'endpoint="([^"]*)"', httpx.get(f"{url}/metrics", timeout=30).text))


def test_unknown_paths_add_no_metric_series(served):
    before = endpoint_labels(served["url"])
    with httpx.Client(base_url=served["url"], headers=served["headers"], timeout=30) as client:
        for _ in range(25):
            assert client.get(f"/{uuid.uuid4().hex}").status_code == 404
            assert client.post(f"/predict/{uuid.uuid4().hex}", json={}).status_code == 404
            assert client.get(f"/static_content/{uuid.uuid4().hex}").status_code == 404
    after = endpoint_labels(served["url"])
    assert "(unknown)" in after
    assert after - before <= {"(unknown)", "/static_content"}, after - before


def test_the_openapi_document_lists_413_and_408(served):
    responses = httpx.get(f"{served['url']}/docs.json", timeout=30).json()["paths"]["/predict"]["post"]["responses"]
    for status in ("408", "413"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["properties"].keys() == {"error"} and schema["required"] == ["error"], schema
