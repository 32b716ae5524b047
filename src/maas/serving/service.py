"""The BentoML service: raw images in, classes out.

The package stage builds it with the exact model tag it produced
(`bentoml build --arg model_tag=...`); the tag travels inside the Bento.

    bentoml serve maas-digits:<tag>             # the tag is in models/bento/bento.json
    curl -X POST localhost:3000/predict -H 'content-type: application/json' \
         -d '{"images": [[[0,0,5,13,9,1,0,0], ...8 rows...]]}'

With API keys configured (MAAS_API_KEYS_FILE or MAAS_API_KEYS, see auth.py), every route but
health and docs also needs `-H 'Authorization: Bearer <key>'`; without one it gets 401.
Every refused request gets 400 with the body {"error": "<what is wrong>"}
(ErrorResponse) and one WARNING line in the server log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
from pydantic import BaseModel

from maas.serving import BENTO_MODEL_SUBDIR
from maas.serving.auth import RequireKey
from maas.serving.middleware import CHECKED_BATCH, CheckRequests, DocumentErrors, reject
from maas.serving.settings import ServeSettings
from maas.serving.schemas import IMAGES, BadRequest, ImageSpec, PredictResponse, to_batch

with bentoml.importing():
    from maas import model_files
    from maas.data.preprocessor import Preprocessor

# Outside a container BentoML respawns a worker whose __init__ fails, forever: the server
# never becomes ready and never exits. A model that fails to load fails again, so we take
# the container behaviour (no respawn; the server exits when its worker does) and leave
# restarts to the supervisor. This variable only switches respawn in BentoML 1.4.
os.environ.setdefault("BENTOML_CONTAINERIZED", "true")


class ServiceArgs(BaseModel):
    model_tag: str  # name:version in the BentoML model store, set by the package stage


ARGS = bentoml.use_arguments(ServiceArgs)


def load_spec(root: Path) -> tuple[Preprocessor, ImageSpec, ServeSettings]:
    """The preprocessor, what a request may send and the serving settings, from the model's files
    (settings overridden by MAAS_SERVE_* in the environment)."""
    pre = Preprocessor.load(root / "preprocessor.json")
    with open(root / "serve.json", encoding="utf-8") as f:
        settings = ServeSettings.from_mapping(json.load(f)).with_env()
    return pre, ImageSpec(pre.image_shape, pre.raw_min, pre.raw_max, pre.raw_dtype,
                          settings.max_request_images), settings


@bentoml.service(name="maas-digits", traffic={"timeout": 30}, workers=1, resources={"cpu": "1"})
class DigitsService:
    bento_model = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        # A failure here must end the process: BentoML exits when __init__ raises,
        # so a broken model never leaves a server up that answers nothing.
        root = Path(self.bento_model.path_of(BENTO_MODEL_SUBDIR))
        # model_files checks the weights' sha256 and builds the architecture by name: the
        # model directory is data, so nothing in it can choose what code runs here.
        self.model = model_files.load(root)
        self.preprocessor, self.image_spec, self.settings = load_spec(root)
        print(f"maas: loaded {self.bento_model.tag} ({self.model.spec['backend']} {self.model.spec['model']['arch']}, "
              f"compression={model_files.compression_method(self.model.spec)})", flush=True)

    @bentoml.api
    def predict(self, ctx: bentoml.Context, images: list = IMAGES) -> PredictResponse:
        """Classify a batch of raw images.

        A request the model can't take (not JSON, no `images`, an unknown field, a wrong shape,
        a pixel of another type or outside the raw range, too many images) gets 400 with the body
        `{"error": "<what is wrong, naming the field>"}`, e.g. `{"error": "images[0][2][3] is 3.5;
        pixels must be integers in [0, 16] (the raw data's type and range)"}`.
        """
        raw = getattr(ctx.request.state, CHECKED_BATCH, None)  # over HTTP, CheckRequests checked the body
        if raw is None:
            try:
                raw = to_batch(images, self.image_spec)
            except BadRequest as e:
                return reject(e)
        out = self.model.predictor.predict(self.preprocessor.transform(raw))
        return PredictResponse(classes=out.proba.argmax(1).tolist(), probabilities=out.proba.astype(float).round(6).tolist(),
                               anomaly_scores=None if out.anomaly is None else out.anomaly.astype(float).round(6).tolist())


# Starlette wraps middlewares in the order added, the first outermost: RequireKey refuses a
# request without a valid key before CheckRequests reads its body.
DigitsService.add_asgi_middleware(RequireKey)
DigitsService.add_asgi_middleware(DocumentErrors)
DigitsService.add_asgi_middleware(CheckRequests, route=DigitsService.apis["predict"].route)
