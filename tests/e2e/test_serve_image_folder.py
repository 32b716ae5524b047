"""Your own images end to end: a folder of PNGs and JPEGs of any size, one sub-folder per class, through
every stage with `data=image_folder data.path=DIR`, then served by `maas serve` over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import serving_project, tiny_overrides
from maas import io
from maas.data.split_files import read_split

pytestmark = pytest.mark.slow

CLASSES = {"zero": 0, "one": 1, "two": 2}  # folder name -> digit; sorted by name: one=0, two=1, zero=2
SHAPE = (3, 12, 12)  # RGB at another size than digits' 8x8: what the Bento must take unchanged


def digits_folder(root: Path, per_class: int = 40) -> Path:
    """scikit-learn's digits scaled to 0..255 and upscaled to 10..24 px, as grayscale or RGB, PNG or JPEG."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    for name, digit in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == digit][:per_class]):
            size = int(rng.integers(10, 25))
            img = Image.fromarray((image * 255 / 16).round().astype(np.uint8), "L").resize((size, size))
            img = img.convert("RGB") if i % 3 == 1 else img
            img.save(root / name / f"{i:03d}.png") if i % 2 == 0 else img.save(root / name / f"{i:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def image_served(tmp_path_factory):
    """Every stage on the folder (the tiny trainer), then the Bento served from a project whose BentoML
    store is empty and with the venv not on PATH, as a user runs it."""
    from maas.config import compose
    from maas.registry import all_stages

    work = tmp_path_factory.mktemp("image-folder")
    folder = digits_folder(work / "my images")  # a space in the path, as users' folders have
    cfg = compose(tiny_overrides(work, work / "raw") + ["data=image_folder", f"data.path={folder}",
                                                        f"data.image_shape=[{','.join(map(str, SHAPE))}]"])
    summaries = {s.name: s.run(cfg) for s in all_stages()}

    with serving_project(cfg, work) as url:
        yield {"url": url, "cfg": cfg, "summaries": summaries}


def test_the_served_model_answers_as_the_pipeline_on_the_folders_test_images(image_served):
    from maas import model_files
    from maas.data.sources import read_raw, to_arrays

    cfg, url = image_served["cfg"], image_served["url"]
    assert list(cfg.data.class_names) == ["one", "two", "zero"] and image_served["summaries"]["validate"]["rows"] == 120
    test = read_split(cfg.paths.processed, "test")
    x, y = to_arrays(read_raw(cfg), cfg.data)
    raw = x[test["index"]].reshape(-1, *SHAPE).astype(int)
    assert raw.max() > 200 and np.array_equal(y[test["index"]], test["y"])  # 0..255 pixels, the split's labels

    r = httpx.post(f"{url}/predict", json={"images": raw.tolist(), "return_probabilities": True}, timeout=60)
    assert r.status_code == 200, r.text
    # The pipeline's answer: the chosen (compressed) model on the preprocessed test split, as evaluated.
    expected = model_files.load(cfg.paths.compressed).predictor.predict(test["x"]).proba
    body = r.json()
    assert body["classes"] == expected.argmax(1).tolist()
    assert np.array_equal(body["probabilities"], expected.astype(float).round(6))
    accuracy = float(np.mean(np.array(body["classes"]) == test["y"]))
    report = io.read_json(Path(cfg.paths.reports) / "compression.json")
    assert accuracy == pytest.approx(report["served_test_accuracy"]) and accuracy >= 0.8
    print(f"served test accuracy {accuracy:.4f} on {len(raw)} images")

    # A digits-sized request is not this model's input: refused, naming the shape.
    small = httpx.post(f"{url}/predict", json={"images": [[[0] * 8] * 8]}, timeout=30)
    assert small.status_code == 400 and "must be 3x12x12, got 8x8" in small.json()["error"], small.text

    # The class names travel with the model: the card names them, and /metadata carries them.
    card = httpx.get(f"{url}/metadata", timeout=10).json()
    assert card["config"]["data"]["class_names"] == ["one", "two", "zero"] and card["classes"] == [0, 1, 2]
    assert card["input"] == {"shape": list(SHAPE), "dtype": "int", "min": 0, "max": 255,
                             "max_request_images": card["input"]["max_request_images"]}
    assert "classes 0 (one), 1 (two), 2 (zero)" in (Path(cfg.paths.reports) / "model_card.md").read_text()
