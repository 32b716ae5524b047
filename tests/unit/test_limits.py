"""maas.serving.limits in-process: what read_body reads, answers and leaves unread, message by message.

Over HTTP (real clients, the real server) these are in tests/e2e/test_serve_limits.py; here the ASGI
messages show what HTTP can't: how much of a body is read before the answer, and when nothing is sent.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from maas.errors import ConfigError
from maas.serving.limits import check_timeouts, read_body
from maas.serving.settings import ServeSettings

SETTINGS = ServeSettings(max_body_bytes=100, body_timeout_s=0.5)


class Client:
    """A client as the app sees it: its messages, one per receive(), then nothing (it stalls)."""

    def __init__(self, *messages, headers=()):
        self.pending = list(messages)
        self.received = 0
        self.sent = []
        self.scope = {"type": "http", "path": "/predict", "headers": list(headers)}

    async def receive(self):
        if not self.pending:
            await asyncio.sleep(3600)
        self.received += 1
        return self.pending.pop(0)

    async def send(self, message):
        self.sent.append(message)

    def read(self):
        return asyncio.run(read_body(self.scope, self.receive, self.send, SETTINGS))

    @property
    def answer(self) -> tuple[int, dict, dict]:
        start, *body = self.sent
        assert not body[-1].get("more_body", False)  # the response was finished, so the server closes
        return start["status"], dict(start["headers"]), json.loads(b"".join(m["body"] for m in body))


def chunk(data: bytes, more: bool = True) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


def test_a_body_within_the_limit_is_read_whole():
    client = Client(chunk(b"1" * 60), chunk(b"2" * 40, more=False))
    assert client.read() == b"1" * 60 + b"2" * 40
    assert client.sent == []


def test_a_declared_length_over_the_limit_is_refused_unread():
    client = Client(chunk(b"1" * 1000), headers=[(b"content-length", b"1000000")])
    assert client.read() is None
    status, headers, body = client.answer
    assert (status, headers[b"connection"]) == (413, b"close")
    assert body == {"error": "the body is 1000000 bytes; at most 100 bytes per request"}
    assert client.received == 0  # more than twice the limit: not worth draining before closing


def test_a_client_that_expects_100_continue_is_never_asked_for_its_body():
    client = Client(chunk(b"1" * 150, more=False), headers=[(b"content-length", b"150"), (b"expect", b"100-continue")])
    assert client.read() is None
    assert client.answer[0] == 413 and client.received == 0  # receive() would send "100 Continue"


def test_a_body_slightly_over_the_limit_is_drained_after_the_413_so_the_client_can_read_it():
    client = Client(chunk(b"1" * 150, more=False), headers=[(b"content-length", b"150")])
    assert client.read() is None
    assert client.answer[0] == 413 and client.received == 1


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_read_no_further_than_the_drain():
    client = Client(*[chunk(b"1" * 30) for _ in range(20)])
    assert client.read() is None
    status, _, body = client.answer
    assert status == 413 and body == {"error": "the body is more than 100 bytes; at most 100 bytes per request"}
    assert client.received == 4 + 3  # 120 bytes to pass the limit, then dropped until past twice the limit


def test_a_stalled_client_gets_408():
    client = Client(chunk(b"1" * 10))
    assert client.read() is None
    status, headers, body = client.answer
    assert (status, headers[b"connection"]) == (408, b"close")
    assert body == {"error": "the body was not received in full within 0.5 s"}


def test_a_client_that_leaves_gets_nothing():
    client = Client(chunk(b"1" * 10), {"type": "http.disconnect"})
    assert client.read() is None
    assert client.sent == []


@pytest.mark.parametrize("timeout, named", [(30, "below the service's traffic timeout (30 s)"),
                                            (0, "must be above 0")])
def test_a_body_timeout_that_cannot_work_is_refused_at_load(timeout, named):
    with pytest.raises(ConfigError, match=r"serve\.body_timeout_s=.*" + named.replace("(", r"\(").replace(")", r"\)")):
        check_timeouts(ServeSettings(body_timeout_s=timeout), traffic_timeout=30)
    check_timeouts(ServeSettings(body_timeout_s=29), traffic_timeout=30)
