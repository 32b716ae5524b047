"""A no-op twin of the maas Bento's /predict, for bench/serving.py's server ceiling.

    MAAS_SERVE_WORKERS=N bentoml serve noop_service:Noop --working-dir bench

It takes the same JSON body ({"images": [...], optional "return_probabilities"}), parsed by
BentoML into the same typed arguments as DigitsService.predict (digits' [N, 8, 8] int64 array),
in an async method like it, and answers a constant of the same response model, on the same
server config (traffic timeout, cpu resource, workers from MAAS_SERVE_WORKERS). What it costs
is BentoML's own: HTTP, parsing, serialising, its access log. No maas middleware, no model.
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape

from maas.serving.schemas import PredictResponse

Images = Annotated[np.ndarray, Shape((-1, 8, 8)), DType("int64")]
ANSWER = PredictResponse(classes=[0], probabilities=[[1.0] + [0.0] * 9], anomaly_scores=[])


@bentoml.service(name="noop", traffic={"timeout": 30}, workers=int(os.environ.get("MAAS_SERVE_WORKERS", "1")),
                 resources={"cpu": "1"})
class Noop:
    @bentoml.api
    async def predict(self, images: Images, return_probabilities: bool = True) -> PredictResponse:
        return ANSWER
