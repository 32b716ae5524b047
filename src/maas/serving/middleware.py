"""ASGI middleware of the Bento: one error shape for every refused request, documented.

BentoML answers its own request errors in two other shapes (a list for
InvalidArgument, an object with a list `detail` for a body pydantic refuses)
and logs each as an ERROR with a traceback. Checking the raw body before
BentoML parses it gives every bad request the one shape and one warning line,
and keeps a bad request out of any batch it would share with others.
"""

from __future__ import annotations

import json
import logging

# Imported once: `bentoml.get_current_service` is a lazy module attribute, resolved again on every use.
from bentoml import get_current_service
from starlette.responses import JSONResponse

from maas.serving.limits import read_body
from maas.serving.metrics import count_rejection
from maas.serving.openapi import document
from maas.serving.schemas import BadRequest, ErrorResponse, parse_body

logger = logging.getLogger("maas.serving")
CHECKED = "maas_checked_request"  # request.state key: the schemas.Checked CheckRequests made of the body


def reject(error: BadRequest) -> JSONResponse:
    """The one answer to a request the model can't take: 400, ErrorResponse, one warning line."""
    logger.warning("refused a /predict request: %s", error)
    count_rejection(error.reason)
    return JSONResponse(ErrorResponse(error=str(error)).model_dump(), status_code=400)


class CheckRequests:
    """ASGI middleware that checks each /predict body before BentoML parses it.

    BentoML answers its own request errors in two other shapes (a list for InvalidArgument, an
    object with a list `detail` for a body pydantic refuses) and logs each as an ERROR with a
    traceback. Checking the raw body here gives every bad request the one shape and one warning
    line, and keeps a bad request out of any batch it would share with others.
    """

    def __init__(self, app, route: str) -> None:
        self.app, self.route = app, route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != self.route:
            return await self.app(scope, receive, send)
        # The spec is the service instance's, which BentoML creates after this middleware; before
        # that, BentoML answers on its own that the service isn't ready.
        service = get_current_service()
        spec = getattr(service, "request_spec", None)
        if spec is None:
            return await self.app(scope, receive, send)
        body = await read_body(scope, receive, send, service.settings)  # None: answered (413, 408) or dropped
        if body is None:
            return
        try:
            _check_media_type(scope)
            checked = parse_body(body, spec)
        except BadRequest as e:
            return await reject(e)(scope, receive, send)
        # Hand the checked request to the API (request.state), so it isn't checked a second time.
        scope.setdefault("state", {})[CHECKED] = checked
        await self.app(scope, _replay(body, receive), send)


def _check_media_type(scope) -> None:
    headers = dict(scope["headers"])
    media_type = headers.get(b"content-type", b"application/json").decode("latin-1").split(";")[0].strip()
    # BentoML reads form and pickle bodies with other parsers than the JSON one parse_body checks.
    if media_type != "application/json":
        raise BadRequest(f"content-type must be application/json, got {media_type}", "content_type")


def _replay(body: bytes, receive):
    """A receive() that hands the app the body already read, then waits on the client as before."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class DocumentErrors:
    """ASGI middleware that makes /docs.json describe the error body this service sends.

    BentoML's document describes 400 and 500 bodies as {"error", "detail"}; every error from
    this service, and BentoML's own 500, is an ErrorResponse: {"error": "<what is wrong>"}.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            return await self.app(scope, receive, send)
        start, chunks = {}, []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        doc = json.loads(b"".join(chunks)) if start.get("status") == 200 else None
        if doc is None:  # BentoML failed to build it: pass its answer on untouched
            await send(start)
            return await send({"type": "http.response.body", "body": b"".join(chunks)})
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("InvalidArgument", "InternalServerError"):  # what the 400 and 500 responses refer to
            if name in schemas:
                schemas[name] = {**ErrorResponse.model_json_schema(), "title": name}
        document(doc, getattr(get_current_service(), "request_spec", None))
        await JSONResponse(doc)(scope, receive, send)
