"""The served model is the built one: every file against the Bento's manifest, and no non-finite weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from maas import io, model_files
from maas.errors import ArtifactError
from maas.serving import BENTO_MODEL_SUBDIR, integrity

TINY = {"arch": "cnn", "in_channels": 1, "image_size": 8, "channels": 2, "hidden": 4, "num_classes": 10}


@pytest.fixture
def built(tmp_path) -> tuple[Path, dict]:
    """A model directory laid out as the package stage stages it, and its manifest."""
    from maas.backends.torch.api import get_weights
    from maas.models import build_model

    out = tmp_path / "model"
    out.mkdir()
    model_files.write_model_dir(out, weights=get_weights(build_model(TINY)),
                                spec={"backend": "torch", "model": TINY, "input_shape": [1, 8, 8]})
    io.write_json(out / "preprocessor.json", {"mean": 0.5})
    io.write_json(out / "serve.json", {"max_batch_size": 8})
    return out, integrity.manifest(sorted(out.iterdir()))


def nan_in_a_tensor(directory: Path) -> str:
    """Write NaN into the first float tensor and record the new file's sha256 in model.yaml,
    so that model.yaml and its weights agree: only the manifest or the finite check can tell."""
    from safetensors.numpy import load_file, save_file

    spec = yaml.safe_load((directory / "model.yaml").read_text())
    path = directory / spec["weights"]
    weights = load_file(str(path))
    name = sorted(k for k, v in weights.items() if np.issubdtype(v.dtype, np.floating))[0]
    weights[name] = weights[name].copy()
    weights[name].flat[0] = np.nan
    save_file(weights, str(path), metadata={"format": model_files.FORMAT})
    spec["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return name


def test_the_manifest_records_every_file_by_an_independent_hash(built):
    directory, recorded = built
    assert recorded.keys() == {"model.yaml", "weights.safetensors", "preprocessor.json", "serve.json"}
    for name, rec in recorded.items():
        data = (directory / name).read_bytes()
        assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    integrity.check(directory, recorded)  # the files as built pass


@pytest.mark.parametrize("tamper, named", [
    (lambda d: (d / "preprocessor.json").unlink(), "preprocessor.json is missing"),
    (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:100]),
     r"weights.safetensors is 100 bytes, the package stage wrote \d+ \(truncated or partly copied\)"),
    (lambda d: (d / "serve.json").write_text((d / "serve.json").read_text().replace("8", "9")),
     "serve.json has sha256 [0-9a-f]{64}, the package stage recorded [0-9a-f]{64} \\(changed\\)"),
    (lambda d: (d / "payload.pkl").write_bytes(b"\x80\x04."), "payload.pkl is there but was not packaged"),
    (lambda d: (d / "sub").mkdir() or (d / "sub" / "x.json").write_text("{}"), "sub/x.json is there but was not"),
    (lambda d: (d / "serve.json").unlink() or (d / "serve.json").symlink_to(d / "gone"), "serve.json is missing"),
])
def test_each_difference_from_the_manifest_is_named(built, tamper, named):
    directory, recorded = built
    tamper(directory)
    with pytest.raises(ArtifactError, match=f"package stage built: .*{named}.*Fix: re-import the Bento's archive"):
        integrity.check(directory, recorded)


def test_every_difference_is_named_at_once(built):
    directory, recorded = built
    (directory / "preprocessor.json").unlink()
    (directory / "extra.txt").write_text("x")
    with pytest.raises(ArtifactError) as e:
        integrity.check(directory, recorded)
    assert "preprocessor.json is missing; extra.txt is there but was not packaged." in str(e.value)


def test_a_consistent_tamper_passes_model_yaml_but_not_the_manifest_nor_the_finite_check(built):
    directory, recorded = built
    tensor = nan_in_a_tensor(directory)
    model_files.read_spec(directory)  # model.yaml is well-formed and agrees with its weights' hash
    with pytest.raises(ArtifactError, match="model.yaml (is|has) .*; weights.safetensors (is|has) "):
        integrity.check(directory, recorded)
    # Someone who also rewrote the Bento's manifest still meets the finite check, by tensor name.
    integrity.check(directory, integrity.manifest(sorted(directory.iterdir())))
    with pytest.raises(ArtifactError, match=f"tensor '{tensor}' holds 1 non-finite value\\(s\\) \\(NaN or inf\\)"):
        model_files.load(directory)


def test_inf_is_refused_and_integer_tensors_are_left_alone(tmp_path):
    ok = {"scale": np.ones(3, np.float16), "q.__int8": np.full((2, 2), -128, np.int8)}
    model_files.check_finite(ok, tmp_path / "w.safetensors")
    with pytest.raises(ArtifactError, match=r"w.safetensors: tensor 'scale' holds 2 non-finite value\(s\) .* of 3"):
        model_files.check_finite({**ok, "scale": np.array([1, np.inf, -np.inf], np.float32)},
                                 tmp_path / "w.safetensors")


@pytest.mark.parametrize("recorded, named", [
    (None, "records no manifest \\(model_files\\)"),
    ({}, "records no manifest"),
    ({"model.yaml": "abc"}, "manifest entry for 'model.yaml' is 'abc'"),
    ({"model.yaml": {"sha256": "abc", "bytes": True}}, "manifest entry for 'model.yaml'"),
])
def test_a_bento_without_a_usable_manifest_is_refused(built, recorded, named):
    with pytest.raises(ArtifactError, match=named):
        integrity.check(built[0], recorded)


def test_the_bento_carries_the_manifest_of_the_model_it_serves(tiny_run):
    """The package stage's record, in the Bento's own bento.yaml, lists exactly the stored model's files."""
    import bentoml

    _, summaries = tiny_run
    bento = bentoml.bentos.get(summaries["package"]["bento_tag"])
    recorded = bento.info.args[integrity.MANIFEST_ARG]
    stored = Path(bentoml.models.get(summaries["package"]["model_tag"]).path_of(BENTO_MODEL_SUBDIR))
    assert recorded.keys() == {p.name for p in stored.iterdir()}
    assert {"model.yaml", "preprocessor.json", "serve.json", "model_card.json"} < recorded.keys()
    for name, rec in recorded.items():
        assert rec["sha256"] == hashlib.sha256((stored / name).read_bytes()).hexdigest(), name


def test_the_package_stage_refuses_a_damaged_copy_in_the_store(built):
    """A tag already in the store is reused, not rewritten: its files must still be the ones packaged."""
    import bentoml

    from maas.stages.package import check_stored, save_bento_model

    directory, recorded = built
    tag = save_bento_model("maas-integrity-test", sorted(directory.iterdir()), {})
    try:
        stored = Path(bentoml.models.get(tag).path_of(BENTO_MODEL_SUBDIR))
        check_stored(tag, recorded)
        (stored / "serve.json").write_text("{}")
        with pytest.raises(ArtifactError, match=f"serve.json is 2 bytes.*Fix: `bentoml models delete {tag}`"):
            check_stored(tag, recorded)
    finally:
        bentoml.models.delete(tag)
