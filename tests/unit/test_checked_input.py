"""maas.serving.checked_input against BentoML's real app, in a fresh process.

The shortcut relies on BentoML internals (see the module's docstring); if an upgrade changes them,
these tests fail here: a checked request parsed again, or an unchecked one not parsed at all.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import run_probe

# A service shaped like DigitsService.predict (images + return_probabilities, a Context), built into
# BentoML's own ASGI app (Service.to_asgi, as its worker does). A stand-in for CheckRequests leaves a
# Checked on the request when the header x-checked is sent; the API reports what BentoML handed it.
PROBE = textwrap.dedent("""
    import json
    from typing import Annotated
    import bentoml
    import numpy as np
    from bentoml.validators import DType, Shape
    from starlette.testclient import TestClient
    from maas.serving import checked_input
    from maas.serving.middleware import CHECKED
    from maas.serving.schemas import Checked

    @bentoml.service(name="probe")
    class Probe:
        @bentoml.api
        async def predict(self, ctx: bentoml.Context, images: Annotated[np.ndarray, Shape((-1, 2)), DType("int64")],
                          return_probabilities: bool = True) -> dict:
            checked = getattr(ctx.request.state, CHECKED, None)
            return {"images": None if images is None else images.tolist(),
                    "return_probabilities": return_probabilities, "checked": checked is not None}

    class MarkChecked:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if (b"x-checked", b"1") in scope.get("headers", []):
                scope.setdefault("state", {})[CHECKED] = Checked(np.zeros((1, 2), np.float32), False)
            await self.app(scope, receive, send)

    Probe.add_asgi_middleware(MarkChecked)
    checked_input.take_checked_requests(Probe.apis["predict"])
    checked_input.take_checked_requests(Probe.apis["predict"])  # idempotent: a second call must not wrap twice

    def post(body, checked):
        r = client.post("/predict", content=body, headers={"content-type": "application/json",
                                                           **({"x-checked": "1"} if checked else {})})
        return [r.status_code, r.json() if r.status_code == 200 else None]

    with TestClient(Probe.to_asgi()) as client:
        print(json.dumps({
            "unchecked": post(b'{"images": [[1, 2]], "return_probabilities": false}', checked=False),
            "unchecked_bad": post(b'{"images": [[1, 2, 3]]}', checked=False),
            # BentoML would refuse this body (the wrong shape): checked, it is never parsed again.
            "checked": post(b'{"images": [[1, 2, 3]]}', checked=True),
        }))
""")


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    return run_probe(PROBE, tmp_path_factory.mktemp("checked-input"))


def test_a_checked_request_is_not_parsed_again(probed):
    # Its options come from the checked request; `images` is the placeholder the API doesn't read.
    assert probed["checked"] == [200, {"images": None, "return_probabilities": False, "checked": True}], probed


def test_a_request_nobody_checked_is_parsed_by_bentoml_as_before(probed):
    assert probed["unchecked"] == [200, {"images": [[1, 2]], "return_probabilities": False, "checked": False}], probed
    assert probed["unchecked_bad"][0] == 400, probed  # BentoML's own validation still runs
