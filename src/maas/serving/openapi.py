"""What /docs.json adds to BentoML's document: GET /metadata, and a /predict example that works.

BentoML documents only its `@bentoml.api` routes (and mounted FastAPI apps), so the
Starlette route of metadata.py is added here. Its request example for /predict comes
from the field's schema, which Swagger UI can't turn into a valid body; the example
added here is a real digit when the served model takes digits (a row near the training
data's centre for a table), so "Try it out" sends a request that gets 200. For a table,
the rows' schema also gains what is known only once the model is loaded: the most rows
per request and each numeric column's bounds.
"""

from __future__ import annotations

from typing import Any

from maas.serving import limits
from maas.serving.metadata import ROUTE as METADATA_ROUTE, MetadataResponse
from maas.serving.schemas import EXAMPLE_IMAGE, ImageSpec

REF = "#/components/schemas/{model}"


def example_images(spec: ImageSpec) -> list:
    """A one-image batch `spec` accepts: the example digit if it fits, else a blank image (all `low`)."""
    image = EXAMPLE_IMAGE if spec.shape == (1, len(EXAMPLE_IMAGE), len(EXAMPLE_IMAGE[0])) else None
    if image is None or not all(spec.low <= v <= spec.high for row in image for v in row):
        c, h, w = spec.shape
        blank = int(spec.low) if float(spec.low).is_integer() else spec.low
        image = [[blank] * w] * h if c == 1 else [[[blank] * w] * h] * c
    return [image]


def document(doc: dict[str, Any], spec, predict_route: str = "/predict") -> None:
    """Add to the OpenAPI document `doc` (in place) GET /metadata and, given the served `spec` (an ImageSpec
    or a table_requests.TableSpec), the /predict request body's example."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    card = MetadataResponse.model_json_schema(ref_template=REF)
    schemas.update(card.pop("$defs", {}))
    schemas[MetadataResponse.__name__] = card
    doc.setdefault("paths", {})[METADATA_ROUTE] = {"get": {
        "tags": ["Service APIs"],  # BentoML's tag for the service's own routes
        "operationId": "metadata",
        "description": "The served model's card: its model and Bento tags, metrics, classes, the input /predict "
                       "takes, compression, training run and config, and the training data's hash.",
        "responses": {"200": {"description": "The model card", "content": {
            "application/json": {"schema": {"$ref": REF.format(model=MetadataResponse.__name__)}}}}},
    }}
    predict = doc["paths"].get(predict_route, {}).get("post", {})
    predict.get("responses", {}).update(limits.RESPONSES)
    body = predict.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        # CheckRequests refuses a request without a body, or with fields other than the API's; BentoML's
        # document allowed both (found by fuzzing from this document: tests/e2e/test_serve_fuzz.py).
        predict["requestBody"]["required"] = True
        body["application/json"]["schema"]["additionalProperties"] = False
    if spec is not None and "application/json" in body:
        # The media type's example is what Swagger UI's "Try it out" puts in the body.
        body["application/json"]["example"] = {spec.field: spec.example() if spec.field == "rows"
                                               else example_images(spec)}
        if spec.field == "rows":
            _bound_rows(body["application/json"]["schema"].get("properties", {}).get("rows"), spec)


def _bound_rows(rows: dict | None, spec) -> None:
    """The served limits on `rows` (the schema from table_requests.rows_schema): rows per request, and each
    numeric column's bounds."""
    if not rows or "items" not in rows:
        return
    rows["maxItems"] = spec.max_request_rows
    properties = rows["items"].get("properties", {})
    for name, (low, high) in spec.bounds().items():
        if name in properties:
            properties[name].update(minimum=low, maximum=high)
