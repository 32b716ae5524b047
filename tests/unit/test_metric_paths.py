"""maas.serving.metric_paths against BentoML's real app and metrics middleware, in a fresh process.

The fix relies on BentoML internals (see the module's docstring); if an upgrade changes them,
these tests fail here with the labels BentoML now writes.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import run_probe

# A one-API service built into BentoML's own ASGI app (Service.to_asgi, as its worker does), sent
# unknown paths first as BentoML has it ("/before-..."), then with the fix ("/after-..."). The process
# has its own metrics directory: prometheus_client picks multiprocess mode when it is imported.
PROBE = textwrap.dedent("""
    import json, uuid
    import bentoml
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient
    from bentoml._internal.configuration.containers import BentoMLContainer
    from maas.serving import metric_paths

    @bentoml.service(name="probe")
    class Probe:
        @bentoml.api
        def echo(self, x: int) -> int:
            return x

    # A mounted app's own route, as the service mounts GET /metadata at "/".
    Probe.mount_asgi_app(Starlette(routes=[Route("/info", lambda request: PlainTextResponse("ok"))]), path="/")

    def hit(client, prefix):
        statuses = [client.post("/echo", json={"x": 1}).status_code, client.get("/echo").status_code,
                    client.get("/docs.json").status_code, client.get("/info").status_code]
        for _ in range(5):
            statuses.append(client.get(f"/{prefix}-{uuid.uuid4().hex}").status_code)
            statuses.append(client.post(f"/echo/{prefix}-{uuid.uuid4().hex}", json={"x": 1}).status_code)
        return statuses

    with TestClient(Probe.to_asgi()) as client:
        statuses = {"before": hit(client, "before")}
        metric_paths.label_unknown_paths_as_one()
        metric_paths.label_unknown_paths_as_one()  # idempotent: a second call must not wrap twice
        statuses["after"] = hit(client, "after")
    text = BentoMLContainer.metrics_client.get().generate_latest().decode()
    labels = sorted({line.split('endpoint="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                     if line.startswith("bentoml_service_request_total{")})
    print(json.dumps({"statuses": statuses, "labels": labels}))
""")


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    return run_probe(PROBE, tmp_path_factory.mktemp("metric-paths"))


def test_bentoml_still_labels_each_unknown_path_apart(probed):
    """If this fails, BentoML no longer writes raw paths into its labels: metric_paths may be unnecessary."""
    assert len([label for label in probed["labels"] if "before-" in label]) == 10, probed


def test_unknown_paths_share_one_label_and_known_ones_keep_theirs(probed):
    assert probed["statuses"]["after"] == [200, 405, 200, 200] + [404] * 10, probed  # still routed by the real path
    assert [label for label in probed["labels"] if "before-" not in label] == ["(unknown)", "/docs.json", "/echo", "/info"]
