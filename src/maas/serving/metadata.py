"""`GET /metadata`: the served model's card, for a caller deciding whether and how to use it.

The package stage stores the card (model_card.json) beside the model's files; the tags
aren't in it (the model's tag is a hash of those files, the Bento's is made after them),
so the service adds them at load, with the input it actually checks (images: shape, pixel
type and range; tables: the columns; and how many per request, overridable by MAAS_SERVE_*
without rebuilding).

`@bentoml.api` routes are POST only, and reading a card is a GET: so this is a small
Starlette app mounted on the service (`mount_asgi_app`), and openapi.py documents it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

CARD_FILE = "model_card.json"  # in the Bento model's maas/ folder and in reports/
ROUTE = "/metadata"
# Left out of the card's config: `paths` names folders on the machine that built the model, and
# `serve` is as of training, while `input` below is what this server enforces.
HIDDEN_CONFIG = ("paths", "serve")


class InputSpec(BaseModel):
    shape: list[int] = Field(description="One image's shape [C, H, W]; single-channel images may be sent as [H, W].")
    dtype: Literal["int", "float"] = Field(description="The pixels' JSON type: integers only, or any finite numbers.")
    min: int | float = Field(description="The smallest pixel value accepted (the raw data's range).")
    max: int | float = Field(description="The largest pixel value accepted.")
    max_request_images: int = Field(description="Most images in one /predict request.")


class ColumnSpec(BaseModel):
    name: str = Field(description="The column's name: the key in each row.")
    type: Literal["numeric", "categorical"] = Field(description="numeric: a JSON number; categorical: one of "
                                                    "`categories`.")
    nullable: bool = Field(description="Whether null is accepted: the column's missing values are filled.")
    missing: str = Field(description="The missing-value policy (data.features.<name>.missing): fail, mean, "
                         "constant or most_frequent.")
    fill: Any = Field(description="What null becomes (fitted on the training rows); null when null is refused.")
    categories: list[Any] = Field(description="A categorical column's values; empty for a numeric one.")
    min: float | None = Field(description="A numeric column's smallest value accepted (far beyond any real one: "
                              "past it, the model's input would overflow); null for a categorical one.")
    max: float | None = Field(description="A numeric column's largest value accepted; null for a categorical one.")


class TableInputSpec(BaseModel):
    columns: list[ColumnSpec] = Field(description="Every row's columns, each required, in the model's order.")
    max_request_rows: int = Field(description="Most rows in one /predict request.")


class DataInfo(BaseModel):
    file: str | None = Field(description="The raw data file the model was trained on.")
    md5: str | None = Field(description="Its md5, as the validate stage recorded it.")
    rows: int | None = Field(description="Its rows.")
    suite: str | None = Field(description="The Great Expectations suite it passed.")
    quarantined: int = Field(0, description="Rows validate held back (data.on_bad_rows=quarantine), left out of "
                             "training.")


class MetadataResponse(BaseModel):
    """The model card of the served model."""

    model_tag: str = Field(description="The BentoML model this server answers with (name:version, a content hash).")
    bento_tag: str | None = Field(description="The Bento being served; null when served from source, not a Bento.")
    classes: list[int] = Field(description="The classes /predict answers with.")
    input: InputSpec | TableInputSpec = Field(description="What /predict takes, as this server checks it: "
                                              "images (InputSpec) or table rows (TableInputSpec).")
    architecture: dict[str, Any] = Field(description="The model's architecture config (`arch` and its arguments).")
    metrics: dict[str, dict[str, int | float]] = Field(
        description="The evaluate stage's metrics of the uncompressed model: test accuracy, macro-F1, expected "
                    "calibration error, samples; "
                    "val accuracy. The served variant's test accuracy is compression.served_test_accuracy.")
    compression: dict[str, Any] = Field(description="The served variant (`chosen`, and `why`) and every variant "
                                        "the compress stage tried: runtime, stored bytes, val and test accuracy "
                                        "(timings are not in the Bento: they differ on every run).")
    gates: list[dict[str, Any]] = Field(default_factory=list, description=(
        "The evaluate stage's gates this model passed: each gate's name, what it compares, its threshold and "
        "the value (gates.champion: against the model packaged before it)."))
    training: dict[str, Any] = Field(description="The training run: epochs, best epoch, device, precision, ...")
    data: DataInfo
    lineage: dict[str, str] | None = Field(default=None, description=(
        "Where the model came from (the Bento's labels): git_commit (the last commit that changed the pipeline's "
        "inputs) and git_dirty, dvc_lock_sha256, data_md5, config_sha256. `maas lineage` checks them against a "
        "workspace."))
    config: dict[str, Any] = Field(description="The resolved config of the pipeline that made the model "
                                   f"(all but {', '.join(HIDDEN_CONFIG)}).")


def load_card(root: Path, *, model_tag: str, bento_tag: str | None, spec) -> MetadataResponse:
    """The card stored in the model directory `root`, with the tags and `spec` (an ImageSpec or a
    table_requests.TableSpec) added."""
    with open(root / CARD_FILE, encoding="utf-8") as f:
        card = json.load(f)
    config = {k: v for k, v in card.get("config", {}).items() if k not in HIDDEN_CONFIG}
    return MetadataResponse(
        model_tag=model_tag, bento_tag=bento_tag, classes=card["classes"],
        input=_input(spec),
        architecture=card["architecture"], metrics=card["metrics"], compression=card["compression"],
        gates=card.get("gates", []), training=card["training"], data=DataInfo(**card["data"]),
        lineage=card.get("lineage"),
        config=config)


def _input(spec) -> InputSpec | TableInputSpec:
    if spec.field == "rows":
        bounds = spec.bounds()
        fills = {c["name"]: c["fill"] for c in spec.preprocessor.columns}
        return TableInputSpec(max_request_rows=spec.max_request_rows, columns=[
            ColumnSpec(**c, fill=fills[c["name"]] if c["nullable"] else None, min=bounds.get(c["name"], (None,))[0],
                       max=bounds.get(c["name"], (None, None))[1]) for c in spec.columns])
    return InputSpec(shape=list(spec.shape), dtype=spec.dtype, min=_number(spec.low), max=_number(spec.high),
                     max_request_images=spec.max_request_images)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def bento_tag() -> str | None:
    """The tag of the Bento this worker serves, or None when it serves source (`bentoml serve module:Class`)."""
    import bentoml

    ctx = bentoml.server_context
    # BentoML sets these in each worker before the service is created; without a Bento the version
    # reads "not available" and the name is the service's.
    return None if ctx.bento_version in ("", "not available") else f"{ctx.bento_name}:{ctx.bento_version}"


async def _metadata(request):
    import bentoml
    from starlette.responses import JSONResponse

    card = getattr(bentoml.get_current_service(), "card", None)
    if card is None:  # the mounted app runs only after the service's __init__, so this is a wiring bug
        return JSONResponse({"error": "the model card is not loaded"}, status_code=500)
    return JSONResponse(card.model_dump(mode="json"))


def app():
    """The app DigitsService mounts at "/": it answers GET /metadata and lets every other path through."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route(ROUTE, _metadata, methods=["GET"])])
