"""A no-op twin of the maas Bento's /predict, for bench/serving.py's server ceiling.

    bentoml serve noop_service:Noop --working-dir bench     # MAAS_SERVE_WORKERS=N as for the Bento

It takes the same JSON body ({"images": [...]}, parsed by BentoML into the same `images: list`
argument) and answers a constant of the same response model, on the same server config as
DigitsService (traffic timeout, cpu resource, workers from MAAS_SERVE_WORKERS), so what it costs
is BentoML's own HTTP, parsing and serialising: no maas middleware, no model.
"""

from __future__ import annotations

import os

import bentoml

from maas.serving.schemas import PredictResponse

ANSWER = PredictResponse(classes=[0], probabilities=[[1.0] + [0.0] * 9], anomaly_scores=None)


@bentoml.service(name="noop", traffic={"timeout": 30}, workers=int(os.environ.get("MAAS_SERVE_WORKERS", "1")),
                 resources={"cpu": "1"})
class Noop:
    @bentoml.api
    def predict(self, images: list) -> PredictResponse:
        return ANSWER
