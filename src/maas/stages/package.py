"""package: save the chosen model to the BentoML store and build a Bento that serves it.

The model's version is a hash of its files, so the same model gets the same
tag. The Bento is built from a staging copy of `src/maas` with that exact tag
as a build argument (never `:latest`), then exported to `paths.bento` so DVC
versions it and `maas serve` can re-import it on a machine whose store lacks it.
The build arguments also record every model file's sha256 and size
(`maas.serving.integrity`), so the served model is checked against what was built.
With serve.encrypt, the model's files are stored encrypted (`maas.serving.encryption`).
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from maas import io, lineage
from maas.bento_archive import bento_version, tree_digest, write_archive
from maas.data.profile import PROFILE_FILE
from maas.gates import BENTO_FILE
from maas.serving import BENTO_MODEL_SUBDIR, encryption, integrity
from maas.serving.metadata import CARD_FILE
from maas.serving.table_requests import request_columns
from maas.stages import Stage, stage_entry, tracked_config
from maas.stages.compress import REPORT_FILE as COMPRESSION_FILE
from maas.stages.evaluate import GATES_FILE, METRICS_FILE, REPORT_DIR
from maas.stages.preprocess import PREPROCESSOR_FILE
from maas.stages.validate import RESULT_FILE

CARD_MD, CARD_JSON = "model_card.md", CARD_FILE  # the service reads the JSON card by that name
# The config the model card and lineage record: every top-level key a stage reads (test_config checks it).
PIPELINE_KEYS = ("seed", "data", "expectations", "drift", "model", "trainer", "evaluate", "gates", "compress",
                 "serve")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/maas
# What maas.serving imports, directly or through the modules it loads (bentoml comes with the image;
# starlette and prometheus-client too, but only within bentoml's wide ranges, and maas is tested on
# these), and what runs the stored model (model.yaml's runtime, not the backend it was trained with):
# a TensorFlow Bento needs no torch, and an ONNX or TFLite one neither torch nor TensorFlow
# (onnxruntime and ai-edge-litert import only numpy besides themselves).
# tests/e2e/test_container.py fails when the service imports a package missing here.
SERVICE_PACKAGES = ("safetensors", "numpy", "omegaconf", "pyyaml", "pydantic", "pydantic-core", "starlette",
                    "prometheus-client")
# A table model's preprocessor (maas.data.table_preprocessor) runs on pandas; an image Bento doesn't import it.
KIND_PACKAGES = {"image": (), "table": ("pandas",)}
ENCRYPTION_PACKAGES = ("cryptography",)  # serve.encrypt: the service decrypts the model (maas.serving.encryption)
RUNTIME_PACKAGES = {"torch": ("torch",), "tensorflow": ("tensorflow-cpu", "keras"), "onnxruntime": ("onnxruntime",),
                    "litert": ("ai-edge-litert",)}


def content_version(files: list[Path], key: encryption.ModelKey | None = None) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    if key is not None:  # stored encrypted with that key: another model in the store than the plain one
        h.update(f"{encryption.CIPHER}:{key.key_id}".encode())
    return h.hexdigest()[:16]


def save_bento_model(name: str, files: list[Path], metadata: dict, key: encryption.ModelKey | None = None) -> str:
    """Copy `files` into a BentoML model named `name` (encrypted with `key` if given); reuse it if that
    content is already stored."""
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{name}:{content_version(files, key)}"
    try:
        return str(bentoml.models.get(tag).tag)
    except NotFound:
        pass
    with bentoml.models.create(tag, labels={"project": "maas"}, metadata=metadata) as ref:
        target = Path(ref.path_of(BENTO_MODEL_SUBDIR))
        target.mkdir()
        for f in files:
            encryption.store(f, target / f.name, key)
    return tag


def check_stored(model_tag: str, model_files: dict[str, dict], key: encryption.ModelKey | None = None) -> None:
    """The store's copy must be these files (decrypted with `key` if given): a reused tag whose files were
    damaged since would otherwise be built into a Bento that refuses to start."""
    import bentoml

    stored = bentoml.models.get(model_tag).path_of(BENTO_MODEL_SUBDIR)
    with encryption.readable(stored, encryption.build_args(key).get(encryption.ENCRYPTION_ARG), key) as files:
        integrity.check(files, model_files, remedy=f"`bentoml models delete {model_tag}` (the store's copy), "
                        "then run the package stage again")


def service_requirements(runtime: str, kind: str = "image", encrypted: bool = False) -> str:
    """The service's imports, with what runs the model (and a table's preprocessing, and what decrypts an
    encrypted one), at the exact versions installed here, for the Bento's image."""
    from importlib.metadata import version

    # A local label like +cpu names this machine's wheel, not a release an image can install.
    packages = (*RUNTIME_PACKAGES[runtime], *SERVICE_PACKAGES, *KIND_PACKAGES[kind],
                *(ENCRYPTION_PACKAGES if encrypted else ()))
    return "".join(f"{name}=={version(name).split('+')[0]}\n" for name in packages)


def build_bento(model_tag: str, bento_name: str, bentofile: Path, runtime: str, args: dict[str, object],
                labels: dict[str, str]) -> str:
    """Build the Bento from a staging copy of src/maas; `args` are the service's ServiceArgs besides the tag.
    Its version is a hash of everything that goes into it: a Bento already built from the same model,
    code, arguments and labels is reused, not built again."""
    import bentoml
    from bentoml.exceptions import NotFound

    requirements = service_requirements(runtime, str(args["data_kind"]), encryption.ENCRYPTION_ARG in args)
    args = {"model_tag": model_tag, **args}
    # BentoML and Python write their versions into the Bento: another of either is another Bento.
    version = bento_version(model=model_tag, name=bento_name, args=args, labels=labels, requirements=requirements,
                            bentofile=bentofile.read_text(), code=tree_digest(PACKAGE_ROOT),
                            bentoml=bentoml.__version__, python=platform.python_version())
    try:
        return str(bentoml.bentos.get(f"{bento_name}:{version}").tag)
    except NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="maas-bento-ctx-") as ctx:
        shutil.copytree(PACKAGE_ROOT, Path(ctx) / "maas", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (Path(ctx) / "requirements.txt").write_text(requirements)
        # reload: the service reads its arguments (the model tag among them) when its module runs, so a
        # second build in one process would otherwise bundle the first build's model under this one's tag.
        bento = bentoml.bentos.build_bentofile(str(bentofile), build_ctx=ctx, name=bento_name, version=version,
                                               labels=labels, args=args, reload=True)
    return str(bento.tag)


def _preprocessor(cfg: DictConfig):
    """The preprocess stage's preprocessor, which must be of the data's kind (data.kind)."""
    from maas.data.preprocessor import Preprocessor, load_preprocessor
    from maas.errors import ArtifactError

    path = Path(cfg.paths.processed) / PREPROCESSOR_FILE
    pre = load_preprocessor(path)
    if (cfg.data.kind == "table") == isinstance(pre, Preprocessor):
        raise ArtifactError(f"data.kind={cfg.data.kind} but {path} preprocesses "
                            f"{'images' if isinstance(pre, Preprocessor) else 'table rows'}: run the preprocess "
                            "stage again")
    return pre


def example_request(pre, max_request_rows: int) -> str:
    """A curl command that asks the served model about one example: a table row near the training data's
    centre, or the digit of the API docs (a blank image for other images)."""
    import json

    from maas.data.preprocessor import Preprocessor
    from maas.serving.openapi import example_images
    from maas.serving.schemas import ImageSpec
    from maas.serving.table_requests import TableSpec

    if isinstance(pre, Preprocessor):
        body = {"images": example_images(ImageSpec(pre.image_shape, pre.raw_min, pre.raw_max, pre.raw_dtype,
                                                   max_request_rows))}
    else:
        body = {"rows": TableSpec(pre, max_request_rows).example()}
    quoted = json.dumps(body, separators=(",", ":")).replace("'", "'\\''")  # inside the shell's single quotes
    return f"curl -s -X POST localhost:3000/predict -H 'content-type: application/json' -d '{quoted}'"


def _project_root() -> Path:
    """Where the lineage's git and dvc.lock are read: the project, or the working directory of a run outside one."""
    from maas.errors import ConfigError
    from maas.params_file import project_root

    try:
        return project_root()
    except ConfigError:
        return Path.cwd()


@stage_entry("package")
def run(cfg: DictConfig) -> dict:
    from maas.model_files import MODEL_FILE, read_spec, runtime
    from maas.model_card import build_card, render_markdown

    compressed, reports = Path(cfg.paths.compressed), Path(cfg.paths.reports)
    key = encryption.package_key(cfg)  # None unless serve.encrypt; a missing key fails before any work
    spec = read_spec(compressed)
    pre = _preprocessor(cfg)
    columns = request_columns(pre) if cfg.data.kind == "table" else None
    metrics = io.read_json(io.require(reports / METRICS_FILE, "evaluation metrics"))
    compression = io.read_json(io.require(reports / COMPRESSION_FILE, "compression report"))
    validation = io.read_json(io.require(Path(cfg.paths.validated) / RESULT_FILE, "validation result"))
    gate_results = io.read_json(io.require(reports / REPORT_DIR / GATES_FILE, "evaluate's gate results"))
    config = tracked_config(cfg, PIPELINE_KEYS)
    record = lineage.build(_project_root(), config=config, data_path=str(cfg.data.path),
                           data_md5=validation.get("data_md5"))

    with tempfile.TemporaryDirectory(prefix="maas-model-") as tmp:
        staged = Path(tmp)
        files = [io.require(compressed / MODEL_FILE, "model.yaml"), io.require(compressed / spec["weights"], "weights"),
                 io.require(Path(cfg.paths.processed) / PREPROCESSOR_FILE, "preprocessor"),
                 io.require(Path(cfg.paths.processed) / PROFILE_FILE, "training data profile"),
                 io.write_json(staged / "serve.json", OmegaConf.to_container(cfg.serve, resolve=True)),
                 io.write_json(staged / lineage.LINEAGE_FILE, record)]
        card = build_card(model_tag="(pending)", spec=spec, metrics=metrics, compression=compression,
                          validation=validation, gates=gate_results, config=config, table_columns=columns)
        card["lineage"] = lineage.labels(record)
        files.append(io.write_json(staged / CARD_JSON, {k: v for k, v in card.items() if k != "model_tag"}))
        model_files = integrity.manifest(files)
        model_tag = save_bento_model(cfg.serve.model_name, files,
                                     metadata={"test_accuracy": metrics["test"]["accuracy"]}, key=key)
    check_stored(model_tag, model_files, key)
    card["model_tag"] = model_tag
    print(f"package: model {model_tag}; building Bento", flush=True)
    if columns is not None:  # the service's API takes {"rows": [...]} with these columns
        service_args = {"data_kind": "table", "table_columns": columns}
    else:
        service_args = {"data_kind": "image", "image_shape": ",".join(map(str, pre.image_shape)),
                        "pixel_dtype": pre.raw_dtype, "pixel_range": f"{pre.raw_min!r},{pre.raw_max!r}"}
    service_args.update({"workers": str(cfg.serve.workers), integrity.MANIFEST_ARG: model_files,
                         **encryption.build_args(key)})
    bento_tag = build_bento(model_tag, cfg.serve.bento_name, io.require(cfg.serve.bentofile, "bentofile").resolve(),
                            runtime(spec), service_args, labels=lineage.labels(record))

    with io.atomic_dir(cfg.paths.bento) as out:
        write_archive(bento_tag, out / f"{cfg.serve.bento_name}.bento", lineage.build_time(record))
        # The metrics travel with the Bento: the next run's champion gate (maas.gates) compares against them,
        # and trained_sha256 says which trained model it is. So does the profile of its training data:
        # the next validate measures drift against it (maas.validation.drift).
        shutil.copy2(Path(cfg.paths.processed) / PROFILE_FILE, out / PROFILE_FILE)
        io.write_json(out / BENTO_FILE, {"bento_tag": bento_tag, "model_tag": model_tag,
                                         "archive": f"{cfg.serve.bento_name}.bento", "profile": PROFILE_FILE,
                                         "trained_sha256": spec.get("trained_sha256"),
                                         "metrics": metrics, "gates": gate_results,
                                         "compression": {k: compression[k] for k in ("chosen", "served_test_accuracy")}})
    io.write_json(reports / CARD_JSON, card | {"bento_tag": bento_tag})
    io.write_text(reports / CARD_MD, render_markdown(card))
    print(f"package: built Bento {bento_tag}\n  serve it: bentoml serve {bento_tag}\n  ask it:   "
          f"{example_request(pre, cfg.serve.max_request_images)}", flush=True)
    return {"bento_tag": bento_tag, "model_tag": model_tag}


STAGE = Stage(
    name="package",
    run=run,
    deps=("{paths.compressed}", "{paths.processed}/" + PREPROCESSOR_FILE, "{paths.processed}/" + PROFILE_FILE,
          "{paths.reports}/" + METRICS_FILE,
          "{paths.reports}/" + REPORT_DIR + "/" + GATES_FILE, "{paths.reports}/" + COMPRESSION_FILE, "{paths.validated}/" + RESULT_FILE, "{serve.bentofile}"),
    outs=("{paths.bento}", "{paths.reports}/" + CARD_MD, "{paths.reports}/" + CARD_JSON),
    # Every key a stage reads: the card and lineage.json record them all, so a change to any re-packages.
    params=PIPELINE_KEYS,
    code=("src/maas",),  # the Bento bundles the whole package, so any edit changes what is served
)
