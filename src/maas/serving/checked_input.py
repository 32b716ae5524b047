"""Parse a /predict body once: BentoML takes the request CheckRequests already checked.

CheckRequests (middleware.py) reads, parses and checks every /predict body over HTTP, and
leaves the result on the request (request.state, key CHECKED) for the API. BentoML would then
parse the replayed body a second time, into the API's input model, with its own validators
(the images into an ndarray, a table's rows into dicts): on the event loop, per request, for arguments the API doesn't
read once a checked request is there. That second parse was the largest single cost per
request the service added over BentoML's own (profiled under load with py-spy).

So the API's input model reads a checked request's arguments from the checked request and
skips the second parse; a request nobody checked (CheckRequests answers before the service
instance exists only with BentoML's "not ready") is parsed by BentoML as before. Clients see
no difference: every body CheckRequests accepts, BentoML's parse accepted too (CheckRequests
is the stricter of the two: types, ranges, unknown fields), and the API answered it from the
checked request either way.

What this relies on, checked by tests/unit/test_checked_input.py: BentoML 1.4's
ServiceAppFactory.api_endpoint builds the API's arguments with
`await method.input_spec.from_http_request(request, serde)` and passes each of the input
model's fields to the API by name.
"""

from __future__ import annotations

from maas.serving.middleware import CHECKED

# What the API gets as its data argument (`images`, or a table's `rows`) for a checked request: it reads
# the checked rows instead.
CHECKED_DATA = None
OPTIONS = ("return_probabilities",)  # the input model's other fields, taken from the checked request


def take_checked_requests(api) -> None:
    """Make the input model of `api` (a BentoML APIMethod) take a checked request's arguments. Idempotent."""
    spec = api.input_spec
    parse = spec.from_http_request  # BentoML's: bound to the input model class
    if getattr(parse, "takes_checked_requests", False):
        return

    async def from_http_request(cls, request, serde):
        checked = getattr(request.state, CHECKED, None)
        if checked is None:
            return await parse(request, serde)
        # model_construct: the values were checked already; validating them again is the cost avoided.
        data = {name: CHECKED_DATA for name in cls.model_fields if name not in OPTIONS}
        return cls.model_construct(**data, return_probabilities=checked.return_probabilities)

    from_http_request.takes_checked_requests = True
    spec.from_http_request = classmethod(from_http_request)
