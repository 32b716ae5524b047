"""The BentoML service: raw images, or raw table rows, in; classes out.

The package stage builds it with the exact model tag it produced
(`bentoml build --arg model_tag=...`); the tag travels inside the Bento, and so
does what the model takes (build argument data_kind: image or table), which
chooses the API's signature: `images` for an image model, `rows` for a table's.

    bentoml serve maas-digits:<tag>             # the tag is in models/bento/bento.json
    curl -X POST localhost:3000/predict -H 'content-type: application/json' \
         -d '{"images": [[[0,0,5,13,9,1,0,0], ...8 rows...]]}'
    curl -X POST localhost:3000/predict -H 'content-type: application/json' \
         -d '{"rows": [{"alcohol": 13.2, "malic_acid": 1.78, ...every feature column...}]}'

With API keys configured (MAAS_API_KEYS_FILE or MAAS_API_KEYS, see auth.py), every route but
health and docs also needs `-H 'Authorization: Bearer <key>'`; without one it gets 401.
Every refused request gets 400 with the body {"error": "<what is wrong>"}
(ErrorResponse) and one WARNING line in the server log. Every request gets an X-Request-ID and one
JSON line on stdout (request_log.py, recorder.py); MAAS_PREDICTION_LOG_DIR turns on the prediction log
(prediction_log.py), and /metrics has drift gauges over the answered inputs (input_drift.py).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import BaseModel

from maas.errors import ArtifactError
from maas.serving import (BENTO_MODEL_SUBDIR, checked_input, encryption, integrity, metadata, metric_paths, metrics,
                          recorder)
from maas.serving.auth import RequireKey
from maas.serving.batching import Batcher
from maas.serving.limits import check_timeouts
from maas.serving.middleware import CHECKED, CheckRequests, DocumentErrors, reject
from maas.serving.request_log import LogRequests, request_info
from maas.serving.schemas import (IMAGES, RETURN_PROBABILITIES, BadRequest, Checked, DocumentedImages, ImageSpec,
                                  PredictResponse)
from maas.serving.settings import ENV_PREFIX, ServeSettings
from maas.serving.table_requests import ROWS, DocumentedRows, TableSpec, request_columns

with bentoml.importing():
    from maas import model_files
    from maas.data.preprocessor import Preprocessor, load_preprocessor

# Outside a container BentoML respawns a worker whose __init__ fails, forever: the server
# never becomes ready and never exits. A model that fails to load fails again, so we take
# the container behaviour (no respawn; the server exits when its worker does) and leave
# restarts to the supervisor. This variable only switches respawn in BentoML 1.4.
os.environ.setdefault("BENTOML_CONTAINERIZED", "true")


class ServiceArgs(BaseModel):
    # Set by the package stage at build time; what the class below needs before any model is loaded.
    model_tag: str                          # name:version in the BentoML model store (never :latest)
    data_kind: str = "image"                # "image" | "table": a request sends {"images": ...} or {"rows": ...}
    # A table's request columns (table_requests.request_columns): name, type, missing, categories, nullable.
    table_columns: list[dict[str, Any]] | None = None
    image_shape: str = "1,8,8"              # channels,height,width: the request schema's shape
    pixel_dtype: str = "int"                # "int" | "float": the raw data's pixel type
    pixel_range: str = "0,16"               # low,high: the raw data's pixel range
    workers: int = 1                        # serve.workers (MAAS_SERVE_WORKERS overrides it)
    # Every file of that model: {name: {"sha256", "bytes"}} (integrity.MANIFEST_ARG).
    model_files: dict[str, dict[str, Any]] | None = None
    # {"cipher", "key_id"} when the model's files are encrypted (serve.encrypt: encryption.ENCRYPTION_ARG).
    model_encryption: dict[str, str] | None = None


ARGS = bentoml.use_arguments(ServiceArgs)
if ARGS.data_kind not in ("image", "table") or (ARGS.data_kind == "table") != bool(ARGS.table_columns):
    raise ArtifactError(f"the Bento's build arguments data_kind={ARGS.data_kind!r} and table_columns "
                        f"({'given' if ARGS.table_columns else 'none'}) don't fit: an image model has no columns, "
                        "a table model needs them; run the package stage again")
TABLE = ARGS.data_kind == "table"
SHAPE = tuple(int(n) for n in ARGS.image_shape.split(","))
LOW, HIGH = (float(n) for n in ARGS.pixel_range.split(","))
# Only the workers override is read here, at import: the others are checked when the model loads, where
# a bad value stops the server with one clear error instead of an import traceback.
WORKERS = ServeSettings(workers=ARGS.workers).with_env({k: v for k, v in os.environ.items()
                                                        if k == f"{ENV_PREFIX}WORKERS"}).workers
IMAGE = SHAPE[1:] if SHAPE[0] == 1 else SHAPE  # a single-channel image is sent as H x W
# The typed request schema: BentoML's client can send a numpy array, and /docs.json describes it.
Images = Annotated[np.ndarray, Shape((-1, *IMAGE)), DType("int64" if ARGS.pixel_dtype == "int" else "float32"),
                   DocumentedImages(IMAGE, LOW, HIGH, ARGS.pixel_dtype == "int")]
# A table's rows as JSON objects; /docs.json describes each column (table_requests.rows_schema).
Rows = Annotated[list[dict[str, Any]], DocumentedRows(tuple(ARGS.table_columns or ()))]


def load_spec(root: Path) -> tuple[Any, ImageSpec | TableSpec, ServeSettings]:
    """The preprocessor, what a request may send and the serving settings, from the model's files
    (settings overridden by MAAS_SERVE_* in the environment)."""
    pre = load_preprocessor(root / "preprocessor.json")
    with open(root / "serve.json", encoding="utf-8") as f:
        settings = ServeSettings.from_mapping(json.load(f)).with_env()
    if TABLE or not isinstance(pre, Preprocessor):
        found = None if isinstance(pre, Preprocessor) else request_columns(pre)
        if found != ARGS.table_columns:
            said = lambda columns: f"table rows with the columns {columns}" if columns else "images"  # noqa: E731
            raise ArtifactError(f"the Bento was built for {said(ARGS.table_columns)}, but its model's "
                                f"preprocessor takes {said(found)}")
        return pre, TableSpec(pre, settings.max_request_images), settings
    built, found = (SHAPE, ARGS.pixel_dtype, (LOW, HIGH)), (tuple(pre.image_shape), pre.raw_dtype,
                                                          (pre.raw_min, pre.raw_max))
    if built != found:
        raise ArtifactError(f"the Bento was built for images (shape, pixel type, range) {built}, but its model's "
                            f"preprocessor takes {found}")
    return pre, ImageSpec(pre.image_shape, pre.raw_min, pre.raw_max, pre.raw_dtype,
                          settings.max_request_images), settings


@bentoml.service(name="maas-digits", traffic={"timeout": 30}, workers=WORKERS, resources={"cpu": "1"})
class DigitsService:
    bento_model = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        # A failure here must end the process: BentoML exits when __init__ raises,
        # so a broken model never leaves a server up that answers nothing.
        stored = Path(self.bento_model.path_of(BENTO_MODEL_SUBDIR))
        with encryption.readable(stored, ARGS.model_encryption) as root:  # decrypted in memory if encrypted
            self._load(root)

    def _load(self, root: Path) -> None:
        integrity.check(root, ARGS.model_files)  # the files the package stage built, no more, no fewer
        # model_files checks the weights (sha256, all finite) and builds the architecture by name: the
        # model directory is data, so nothing in it can choose what code runs here.
        self.model = model_files.load(root)
        self.preprocessor, self.request_spec, self.settings = load_spec(root)
        # A batch's checked rows (raw pixels, or a table's encoded values) -> the model's inputs.
        self._inputs = self.request_spec.inputs if TABLE else self.preprocessor.transform
        check_timeouts(self.settings, DigitsService.config.get("traffic", {}).get("timeout"))
        self.batcher = Batcher(self._infer, self.settings.max_batch_size, self.settings.max_latency_ms,
                               on_batch=metrics.observe_batch)
        self.card = metadata.load_card(root, model_tag=str(self.bento_model.tag), bento_tag=metadata.bento_tag(),
                                       spec=self.request_spec)
        metrics.start(model_tag=self.card.model_tag, bento_tag=self.card.bento_tag, classes=self.card.classes)
        # Request lines, the prediction log and the drift gauges, on a thread of their own.
        self.recorder = recorder.start(root, model_tag=self.card.model_tag, spec=self.request_spec,
                                       drift_window=self.settings.drift_window, table=TABLE)
        # What is loaded by now (torch, numpy, the model: ~250k objects) lives as long as the worker. Under
        # load the collector's full passes walked all of it every few seconds, on the event loop: frozen,
        # they walk only what requests allocate. (Cyclic garbage already there stays: a bounded, one-time
        # amount, cheaper than a gc.collect() first would be on the start time.)
        gc.freeze()
        spec = self.model.spec
        print(f"maas: loaded {self.bento_model.tag} ({spec['backend']} {spec['model']['arch']}, run by "
              f"{model_files.runtime(spec)}, compression={model_files.compression_method(spec)}); batching up to "
              f"{self.settings.max_batch_size} {self.request_spec.unit}, waiting up to {self.settings.max_latency_ms:g} ms", flush=True)

    def _infer(self, raw: np.ndarray) -> tuple:
        out = self.model.predictor.predict(self._inputs(raw))
        return out.proba, out.anomaly

    if TABLE:
        @bentoml.api
        async def predict(self, ctx: bentoml.Context, rows: Rows = ROWS,
                          return_probabilities: bool = RETURN_PROBABILITIES) -> PredictResponse:
            """Classify a batch of raw table rows.

            Each row is an object with every feature column of the training data and no other; GET
            /metadata lists them. Concurrent requests share forward passes (adaptive batching); an answer
            is the same whatever it was batched with. A request the model can't take (not JSON, no `rows`,
            an unknown field, a row that is not an object, a missing or unknown column, a value of the wrong
            type, a category not declared, null in a column whose missing values are not filled, too many
            rows) gets 400 with the body `{"error": "<what is wrong, naming the row and column>"}`, e.g.
            `{"error": "rows[3] has no column \\"alcohol\\""}`.
            """
            return await self._answer(ctx, rows, return_probabilities)
    else:
        @bentoml.api
        async def predict(self, ctx: bentoml.Context, images: Images = IMAGES,
                          return_probabilities: bool = RETURN_PROBABILITIES) -> PredictResponse:
            """Classify a batch of raw images.

            Concurrent requests share forward passes (adaptive batching); an answer is the same whatever
            it was batched with. A request the model can't take (not JSON, no `images`, an unknown field, a
            wrong shape, a pixel of another type or outside the raw range, too many images) gets 400 with
            the body `{"error": "<what is wrong, naming the field>"}`, e.g. `{"error": "images[0][2][3] is
            3.5; pixels must be integers in [0, 16] (the raw data's type and range)"}`.
            """
            return await self._answer(ctx, images, return_probabilities)

    async def _answer(self, ctx: bentoml.Context, values, return_probabilities: bool) -> PredictResponse:
        # Over HTTP, CheckRequests checked the body (and `values` is checked_input.CHECKED_DATA).
        checked = getattr(ctx.request.state, CHECKED, None)
        if checked is None:
            try:
                values = values.tolist() if isinstance(values, np.ndarray) else values
                checked = Checked(self.request_spec.check(values), return_probabilities)
            except BadRequest as e:
                return reject(e)
        info = request_info(ctx.request)
        proba, anomaly = await self.batcher.run(checked.rows, info)
        classes = proba.argmax(1).tolist()
        metrics.count_predictions(classes)
        self.recorder.answered(info, checked.rows, classes, proba)
        # model_construct: tolist() already gives the model's types (int, float); validating them again
        # would cost a pass over every value on the event loop.
        return PredictResponse.model_construct(
            classes=classes,
            probabilities=proba.astype(float).round(6).tolist() if checked.return_probabilities else [],
            anomaly_scores=[] if anomaly is None else anomaly.astype(float).round(6).tolist())


metric_paths.label_unknown_paths_as_one()  # before BentoML builds the app, in `maas serve` and `bentoml serve` alike
DigitsService.mount_asgi_app(metadata.app(), path="/")  # GET /metadata (BentoML's own APIs are POST)
# Starlette wraps middlewares in the order added, the first outermost: LogRequests sees every answer,
# refusals included; RequireKey refuses a request without a valid key before CheckRequests reads its body.
DigitsService.add_asgi_middleware(LogRequests, predict_route=DigitsService.apis["predict"].route)
DigitsService.add_asgi_middleware(RequireKey)
DigitsService.add_asgi_middleware(DocumentErrors)
DigitsService.add_asgi_middleware(CheckRequests, route=DigitsService.apis["predict"].route)
checked_input.take_checked_requests(DigitsService.apis["predict"])  # BentoML doesn't parse a checked body again
