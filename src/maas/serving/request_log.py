"""ASGI middleware of the Bento: a request id and one structured log line per request (maas.serving.recorder).

The id is the client's `X-Request-ID` when it sent a short plain one (letters, digits, `-`, `_`, `.`,
up to 64), so a request can be followed from the caller's logs; otherwise a new one. Either way the
answer carries it back in `X-Request-ID`, and it is the `request_id` of the log line and of the
request's prediction log record. The middleware sits outside the others, so refused requests (no key,
too large, a bad body) get their line too; of a refused request only the error message in its
ErrorResponse is kept, never its body.
"""

from __future__ import annotations

import json
import re
import time
import uuid

# Imported once: `bentoml.get_current_service` is a lazy module attribute, resolved again on every use.
from bentoml import get_current_service
from bentoml.exceptions import BentoMLException

from maas.serving.recorder import RequestInfo

REQUEST = "maas_request"  # request.state key: the RequestInfo of this request
QUIET = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})  # polled every few seconds: no line
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_MAX_ERROR_BODY = 8192  # an ErrorResponse is one short message; a larger body is not one


def request_info(request) -> RequestInfo | None:
    """The RequestInfo LogRequests made for this (Starlette) request, or None outside it."""
    return getattr(request.state, REQUEST, None)


class LogRequests:
    def __init__(self, app, predict_route: str) -> None:
        self.app, self.predict_route = app, predict_route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in QUIET:
            return await self.app(scope, receive, send)
        try:
            recorder = getattr(get_current_service(), "recorder", None)
        except BentoMLException:
            recorder = None
        if recorder is None:  # the service isn't ready: BentoML answers on its own
            return await self.app(scope, receive, send)
        info = RequestInfo(_request_id(scope), time.perf_counter(), time.time())
        scope.setdefault("state", {})[REQUEST] = info
        status, body = 500, bytearray()  # 500: the app raised before it answered

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", info.id.encode())]}
            elif message["type"] == "http.response.body" and status >= 400 and len(body) <= _MAX_ERROR_BODY:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            recorder.finished(info, scope["method"], scope["path"], status, _error(body) if status >= 400 else None,
                              predict=scope["path"].rstrip("/") == self.predict_route)


def _request_id(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _CLIENT_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _error(body: bytes) -> str | None:
    """The message of an ErrorResponse body ({"error": "..."}); None for any other body, which may echo
    what the client sent."""
    if len(body) > _MAX_ERROR_BODY:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and set(parsed) == {"error"} and isinstance(parsed["error"], str):
        return parsed["error"][:1000]
    return None
