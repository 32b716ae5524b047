"""Bounded cost per request: how large a /predict body may be and how long a client may take to send it.

Without these, one 100 MB body is buffered and parsed on the event loop (stalling every
other request for seconds), and a client that stops sending keeps its request open until
BentoML's traffic timeout answers 504, a server error. Here:

- a body over `serve.max_body_bytes` gets 413 before any of it is parsed: at once when its
  Content-Length says so, else (chunked) as soon as the bytes read pass the limit;
- a body not received in full within `serve.body_timeout_s` of the request reaching the
  service gets 408;
- a client that disconnects before sending its whole body is dropped: no response (there
  is nobody to send it to), so nothing is counted in BentoML's metrics. (BentoML's
  TimeoutMiddleware, outside, still waits out its traffic timeout for a response that never
  comes: until then the request shows in `request_in_progress`, an idle coroutine holding
  no worker.)

413 and 408 close the connection. Before closing after a 413, the rest of the body is
read and dropped, by the same deadline, if it ends within twice `max_body_bytes` (see
read_body): so a refused request never costs the server much more than twice an accepted one.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse

from maas.errors import ConfigError
from maas.serving.metrics import count_rejection
from maas.serving.schemas import ErrorResponse
from maas.serving.settings import ServeSettings

logger = logging.getLogger("maas.serving")


class TooLarge(Exception):
    """The body is over the limit: `read` bytes of it were read, `unread` more are on the way (None: unknown)."""

    def __init__(self, message: str, read: int, unread: int | None) -> None:
        super().__init__(message)
        self.read, self.unread = read, unread


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


# The answers of read_body, for the OpenAPI document of the route it guards.
RESPONSES = {
    "408": {"description": "The body was not received in full within serve.body_timeout_s; the connection is closed",
            "content": {"application/json": {"schema": ErrorResponse.model_json_schema()}}},
    "413": {"description": "The body is larger than serve.max_body_bytes; the connection is closed",
            "content": {"application/json": {"schema": ErrorResponse.model_json_schema()}}},
}


def check_timeouts(settings: ServeSettings, traffic_timeout: float | None) -> None:
    """Refuse a body timeout BentoML's traffic timeout would pre-empt: its 504 would answer a slow client first."""
    if traffic_timeout and settings.body_timeout_s >= traffic_timeout:
        raise ConfigError(f"serve.body_timeout_s={settings.body_timeout_s:g} must be below the service's traffic "
                          f"timeout ({traffic_timeout:g} s), or a slow client gets 504 (a server error) instead of 408")
    if settings.body_timeout_s <= 0:
        raise ConfigError(f"serve.body_timeout_s={settings.body_timeout_s:g} must be above 0, or every body gets 408")


async def read_body(scope, receive, send, settings: ServeSettings) -> bytes | None:
    """The whole request body, or None once the request is answered (413, 408) or dropped (client gone)."""
    limit = settings.max_body_bytes
    deadline = asyncio.get_running_loop().time() + settings.body_timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            return await _read_upto(scope, receive, limit)
    except ClientGone:
        logger.info("a client disconnected before sending its whole %s body; dropped", scope["path"])
    except TimeoutError:
        await _refuse(scope, send, 408, "body_timeout",
                      f"the body was not received in full within {settings.body_timeout_s:g} s")
    except TooLarge as e:
        # Closing a socket with unread bytes resets it, and a client still sending can lose the 413 with
        # it. So the rest of the body is read and dropped first (a lingering close), as long as the whole
        # request costs no more than twice an accepted one: 2 * limit bytes, by the same deadline. A
        # client that sent `Expect: 100-continue` hasn't sent the body yet: reading would invite it to.
        expects = (b"expect", b"100-continue") in [(k, v.lower()) for k, v in scope["headers"]]
        budget = 2 * limit - e.read
        if expects or (e.unread is not None and e.unread > budget):  # can't end well: close at once
            budget = 0
        await _refuse(scope, send, 413, "body_too_large", str(e), _discard(receive, budget, deadline))
    return None


async def _read_upto(scope, receive, limit: int) -> bytes:
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise TooLarge(f"the body is {declared} bytes; at most {limit} bytes per request", 0, declared)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            unread = None if declared is None else declared - size
            raise TooLarge(f"the body is more than {limit} bytes; at most {limit} bytes per request", size, unread)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse(scope, send, status: int, reason: str, message: str, drain=None) -> None:
    """Answer `status` with an ErrorResponse and close the connection, after `drain` (awaited) if given."""
    logger.warning("refused a %s request: %s", scope["path"], message)
    count_rejection(reason)
    response = JSONResponse(ErrorResponse(error=message).model_dump(), status_code=status,
                            headers={"connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    # The whole answer goes out before draining; the response ends (and the server closes) after it.
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    if drain is not None:
        await drain
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard(receive, budget: int, deadline: float) -> None:
    """Read and drop the rest of a refused body: until it ends, `budget` bytes, or `deadline`, whichever first."""
    try:
        async with asyncio.timeout_at(deadline):
            while budget > 0:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                budget -= len(message.get("body", b""))
    except TimeoutError:
        pass


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The HTTP server (h11) refuses a malformed Content-Length before the app sees the request.
            return int(value)
    return None
