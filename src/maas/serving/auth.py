"""ASGI middleware of the Bento: `Authorization: Bearer <key>` on every route but health and docs.

Keys come from MAAS_API_KEYS_FILE / MAAS_API_KEYS (see keys.py) in the server's environment, never
from the Bento. It sits outside CheckRequests, so a request without a valid key is refused before
its body is read or parsed. Open: /livez, /readyz, /healthz, the OpenAPI UI (/, /docs.json, its static
files) and /metrics unless serve.metrics_require_key. Everything else, including routes added later,
needs a key: the list of open routes is the one that is written down.

Each key has a role (keys.py). A `predict` key may call the routes in PREDICT_ROUTES; every other keyed
route needs an `admin` key: /metadata (the model's lineage and config) and any route added later, so a
new route is never open to prediction clients by mistake. A valid key without the role gets 403
naming the role needed (a missing or unknown key gets 401).
"""

from __future__ import annotations

import logging

import bentoml
from starlette.responses import JSONResponse

from maas.errors import ConfigError
from maas.serving import metrics
from maas.serving.keys import ADMIN, PREDICT, Keys, allows
from maas.serving.schemas import ErrorResponse

logger = logging.getLogger("maas.serving")
OPEN = frozenset({"/livez", "/readyz", "/healthz", "/", "/docs.json"})
OPEN_PREFIXES = ("/static_content/",)  # the OpenAPI UI's scripts and styles (a StaticFiles mount)
# What a predict key may call besides the open routes: predictions, BentoML's schema of the API (as
# /docs.json, which is open) and /metrics when it is keyed (a scraper needs no admin rights).
PREDICT_ROUTES = frozenset({"/predict", "/schema.json", "/metrics"})
_UNLOADED = object()


def needed_role(path: str) -> str:
    return PREDICT if path in PREDICT_ROUTES else ADMIN


def is_open(path: str, metrics_require_key: bool) -> bool:
    return path in OPEN or path.startswith(OPEN_PREFIXES) or (path == "/metrics" and not metrics_require_key)


def bearer(scope) -> str | None:
    """The key in the request's Authorization header, or None if there is no Bearer credential."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer":  # the scheme is case-insensitive (RFC 9110)
                return None
            return key.strip() or None
    return None


def refuse(error: str, challenge: str, status: int = 401) -> JSONResponse:
    # Nothing about the model or the keys: a client without a key learns only how to send one.
    metrics.count_rejection("unauthorized" if status == 401 else "forbidden")
    return JSONResponse(ErrorResponse(error=error).model_dump(), status_code=status,
                        headers={"WWW-Authenticate": challenge})


def forbid(needed: str, role: str) -> JSONResponse:
    # RFC 6750: a valid token without the rights gets 403 and error="insufficient_scope".
    return refuse(f"this route needs an API key with the {needed} role; this key has the {role} role",
                  f'Bearer error="insufficient_scope", scope="{needed}"', status=403)


def _metrics_require_key() -> bool:
    try:
        settings = getattr(bentoml.get_current_service(), "settings", None)
    except bentoml.exceptions.BentoMLException:  # no service instance: nothing says /metrics is open
        return True
    return settings is None or settings.metrics_require_key


class RequireKey:
    """ASGI middleware that refuses a request to a keyed route without a valid key: 401, ErrorResponse."""

    def __init__(self, app) -> None:
        self.app = app
        self.keys: Keys | None | object = _UNLOADED

    def load(self) -> None:
        self.keys = Keys.from_env()
        if self.keys is None:
            logger.warning("no API keys (neither MAAS_API_KEYS_FILE nor MAAS_API_KEYS is set): every route is open")
            return
        print(f"maas: {self.keys.describe()}", flush=True)  # as the service's startup line (INFO isn't shown)
        if not self.keys.digests and not self.keys.plain:
            logger.warning("%s holds no keys yet: every keyed request gets 401 until one is added", self.keys.path)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._startup(scope, receive, send)
        if self.keys is _UNLOADED:  # a server that skipped the lifespan: load now, failing closed
            self.load()
        path = scope.get("path", "")
        # The service's settings are looked up for /metrics only.
        if self.keys is None or scope["type"] not in ("http", "websocket") \
                or is_open(path, path == "/metrics" and _metrics_require_key()):
            return await self.app(scope, receive, send)
        key = bearer(scope)
        role = None if key is None else self.keys.role(key)
        if role is not None and allows(role, needed_role(path)):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if role is not None:
            response = forbid(needed_role(path), role)
        elif key is None:
            response = refuse("this route needs an API key: send the header 'Authorization: Bearer <key>'", "Bearer")
        else:
            response = refuse("the API key is not valid", 'Bearer error="invalid_token"')
        await response(scope, receive, send)

    async def _startup(self, scope, receive, send) -> None:
        """Read the keys before the service loads its model; a bad keys file or variable fails the
        startup, so the server exits naming it instead of serving without the keys it was told to require."""
        try:
            self.load()
        except ConfigError as e:
            await receive()  # lifespan.startup
            return await send({"type": "lifespan.startup.failed", "message": f"maas: {e}"})
        await self.app(scope, receive, send)
