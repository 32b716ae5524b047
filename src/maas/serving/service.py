"""The BentoML service: raw images in, classes out.

The package stage builds it with the exact model tag it produced
(`bentoml build --arg model_tag=...`); the tag travels inside the Bento.

    bentoml serve maas-digits:<tag>             # the tag is in models/bento/bento.json
    curl -X POST localhost:3000/predict -H 'content-type: application/json' \
         -d '{"images": [[[0,0,5,13,9,1,0,0], ...8 rows...]]}'

Every refused request gets 400 with the body {"error": "<what is wrong>"}
(ErrorResponse) and one WARNING line in the server log.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import bentoml
from pydantic import BaseModel
from starlette.responses import JSONResponse

from maas.serving import BENTO_MODEL_SUBDIR
from maas.serving.schemas import IMAGES, BadRequest, ErrorResponse, ImageSpec, PredictResponse, parse_body, to_batch

with bentoml.importing():
    from maas.backends.torch.checkpoint import load_model
    from maas.backends.torch.fit import predict_proba
    from maas.data.preprocessor import Preprocessor

# Outside a container BentoML respawns a worker whose __init__ fails, forever: the server
# never becomes ready and never exits. A model that fails to load fails again, so we take
# the container behaviour (no respawn; the server exits when its worker does) and leave
# restarts to the supervisor. This variable only switches respawn in BentoML 1.4.
os.environ.setdefault("BENTOML_CONTAINERIZED", "true")

logger = logging.getLogger("maas.serving")


class ServiceArgs(BaseModel):
    model_tag: str  # name:version in the BentoML model store, set by the package stage


ARGS = bentoml.use_arguments(ServiceArgs)


def load_spec(root: Path) -> tuple[Preprocessor, ImageSpec]:
    """The preprocessor and what a request may send, from the model's files."""
    pre = Preprocessor.load(root / "preprocessor.json")
    with open(root / "serve.json", encoding="utf-8") as f:
        max_batch_size = int(json.load(f)["max_batch_size"])
    return pre, ImageSpec(pre.image_shape, pre.raw_min, pre.raw_max, pre.raw_dtype, max_batch_size)


def reject(error: BadRequest) -> JSONResponse:
    """The one answer to a request the model can't take: 400, ErrorResponse, one warning line."""
    logger.warning("refused a /predict request: %s", error)
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
        spec = getattr(bentoml.get_current_service(), "image_spec", None)
        if spec is None:
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        try:
            _check_media_type(scope)
            parse_body(body, spec)
        except BadRequest as e:
            return await reject(e)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)


def _check_media_type(scope) -> None:
    headers = dict(scope["headers"])
    media_type = headers.get(b"content-type", b"application/json").decode("latin-1").split(";")[0].strip()
    # BentoML reads form and pickle bodies with other parsers than the JSON one parse_body checks.
    if media_type != "application/json":
        raise BadRequest(f"content-type must be application/json, got {media_type}")


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


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
        await JSONResponse(doc)(scope, receive, send)


@bentoml.service(name="maas-digits", traffic={"timeout": 30}, workers=1, resources={"cpu": "1"})
class DigitsService:
    bento_model = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        # A failure here must end the process: BentoML exits when __init__ raises,
        # so a broken model never leaves a server up that answers nothing.
        root = Path(self.bento_model.path_of(BENTO_MODEL_SUBDIR))
        self.model, self.spec = load_model(root)
        self.preprocessor, self.image_spec = load_spec(root)
        print(f"maas: loaded {self.bento_model.tag} "
              f"(compression={self.spec.get('compression', {}).get('method', 'none')})", flush=True)

    @bentoml.api
    def predict(self, images: list = IMAGES) -> PredictResponse:
        """Classify a batch of raw images.

        A request the model can't take (not JSON, no `images`, an unknown field, a wrong shape,
        a pixel of another type or outside the raw range, too many images) gets 400 with the body
        `{"error": "<what is wrong, naming the field>"}`, e.g. `{"error": "images[0][2][3] is 3.5;
        pixels must be integers in [0, 16] (the raw data's type and range)"}`.
        """
        try:
            raw = to_batch(images, self.image_spec)
        except BadRequest as e:  # CheckRequests refuses these first over HTTP; kept for any other caller
            return reject(e)
        proba = predict_proba(self.model, self.preprocessor.transform(raw))
        return PredictResponse(classes=proba.argmax(1).tolist(), probabilities=proba.astype(float).round(6).tolist())


DigitsService.add_asgi_middleware(DocumentErrors)
DigitsService.add_asgi_middleware(CheckRequests, route=DigitsService.apis["predict"].route)
