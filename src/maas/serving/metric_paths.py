"""One `endpoint` label for every path the server has no route for, so scanners can't grow /metrics.

BentoML 1.4's RunnerTrafficMetricsMiddleware labels each request's metrics with its raw
path (`endpoint = scope["path"]`): every distinct unknown path adds new series for good
(1,000 random 404s grew /metrics from 69 KB to 4.4 MB, and one scrape to 2.5 s). That
middleware is the outermost one BentoML installs, outside the service's own middlewares,
so a middleware of ours can't change what it sees. What we can change is the class: its
`__call__` is wrapped here, once, at service import, which in both `maas serve` and a bare
`bentoml serve <tag>` happens before the worker builds the app. The wrapper looks the path
up in the app's own route list (the Starlette app BentoML built, at `scope["app"]`) and
hands the middleware a scope whose path is the route's path, or UNKNOWN when no route
matches; the app behind it gets the real path back.

What this relies on, checked by tests/unit/test_metric_paths.py (so a BentoML upgrade that
changes it fails there, not silently in production): the class at
`bentoml._internal.server.http.instruments.RunnerTrafficMetricsMiddleware` is what
BentoML installs, it takes its label from `scope["path"]` and keeps calling `self.app`.
"""

from __future__ import annotations

from starlette.routing import Match

UNKNOWN = "(unknown)"
_REAL_PATH = "maas.real_path"  # scope key: the path the wrapped middleware's app must see again


def label_unknown_paths_as_one() -> None:
    """Make BentoML's traffic metrics label a path without a route as UNKNOWN. Idempotent."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as cls

    original = cls.__call__
    if getattr(original, "labels_unknown_paths", False):
        return

    async def __call__(self, scope, receive, send):
        label = route_label(scope)
        if label == scope.get("path"):
            return await original(self, scope, receive, send)
        if not isinstance(self.app, _RestorePath):
            self.app = _RestorePath(self.app)
        await original(self, {**scope, "path": label, _REAL_PATH: scope["path"]}, receive, send)

    __call__.labels_unknown_paths = True
    cls.__call__ = __call__


def route_label(scope) -> str | None:
    """The path of the app's route for this request, UNKNOWN when there is none; for a scope that isn't
    a request, its own path (None)."""
    app = scope.get("app")
    if scope["type"] not in ("http", "websocket") or app is None:
        return scope.get("path")
    return _label(app.router.routes, scope, prefix="") or UNKNOWN


def _label(routes, scope, prefix: str) -> str | None:
    """A route's path template (the request's own path for a plain route), a file server's mount path,
    or None; mounted apps' routes (BentoML mounts /metadata's app at "/") are looked into."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:  # PARTIAL counts: the path is known, only the method isn't (405)
            continue
        path = prefix + getattr(route, "path", "")
        inner = getattr(route, "routes", None)  # a Mount's app's routes; none for a file server
        if not inner:
            return path or "/"
        if found := _label(inner, {**scope, **child}, prefix=path):
            return found
    return None


class _RestorePath:
    """The app behind the metrics middleware, given the request's real path back."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if _REAL_PATH in scope:
            scope = {k: v for k, v in scope.items() if k != _REAL_PATH} | {"path": scope[_REAL_PATH]}
        await self.app(scope, receive, send)
