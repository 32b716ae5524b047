"""The BentoML service: raw images in, classes out.

The package stage builds it with the exact model tag it produced
(`bentoml build --arg model_tag=...`); the tag travels inside the Bento.

    bentoml serve maas-digits:<tag>             # the tag is in models/bento/bento.json
    curl -X POST localhost:3000/predict -H 'content-type: application/json' \
         -d '{"images": [[[0,0,5,13,9,1,0,0], ...8 rows...]]}'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
from pydantic import BaseModel

from maas.serving import BENTO_MODEL_SUBDIR
from maas.serving.schemas import IMAGES, BadRequest, PredictResponse, to_batch

with bentoml.importing():
    from maas.backends.torch.checkpoint import load_model
    from maas.backends.torch.fit import predict_proba
    from maas.data.preprocessor import Preprocessor

# Outside a container BentoML respawns a worker whose __init__ fails, forever: the server
# never becomes ready and never exits. A model that fails to load fails again, so we take
# the container behaviour (no respawn; the server exits when its worker does) and leave
# restarts to the supervisor. This variable only switches respawn in BentoML 1.4.
os.environ.setdefault("BENTOML_CONTAINERIZED", "true")


class ServiceArgs(BaseModel):
    model_tag: str  # name:version in the BentoML model store, set by the package stage


ARGS = bentoml.use_arguments(ServiceArgs)


@bentoml.service(name="maas-digits", traffic={"timeout": 30}, workers=1, resources={"cpu": "1"})
class DigitsService:
    bento_model = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        # A failure here must end the process: BentoML exits when __init__ raises,
        # so a broken model never leaves a server up that answers nothing.
        root = Path(self.bento_model.path_of(BENTO_MODEL_SUBDIR))
        self.model, self.spec = load_model(root)
        self.preprocessor = Preprocessor.load(root / "preprocessor.json")
        with open(root / "serve.json", encoding="utf-8") as f:
            self.max_batch_size = int(json.load(f)["max_batch_size"])
        print(f"maas: loaded {self.bento_model.tag} "
              f"(compression={self.spec.get('compression', {}).get('method', 'none')})", flush=True)

    @bentoml.api
    def predict(self, images: list = IMAGES) -> PredictResponse:
        try:
            raw = to_batch(images, self.preprocessor.image_shape,
                           (self.preprocessor.raw_min, self.preprocessor.raw_max), self.max_batch_size)
        except BadRequest as e:
            raise bentoml.exceptions.InvalidArgument(str(e)) from None
        proba = predict_proba(self.model, self.preprocessor.transform(raw))
        return PredictResponse(classes=proba.argmax(1).tolist(), probabilities=proba.astype(float).round(6).tolist())
