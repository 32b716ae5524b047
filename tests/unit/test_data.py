"""Raw data export, the split and the preprocessor."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import ROOT
from maas import io
from maas.config import compose
from maas.data.preprocessor import Preprocessor
from maas.data.sources import export, read_raw, to_arrays
from maas.data.splits import stratified_split
from maas.errors import ArtifactError, ConfigError


def test_export_is_what_data_dvc_tracks(tmp_path):
    """A fresh export is byte-identical to the committed data.dvc, so any machine reproduces it."""
    cfg = compose([f"paths.raw={tmp_path}"])
    path = export(cfg)
    tracked = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]
    assert tracked["path"] == "data/raw"
    assert tracked["nfiles"] == 1 and tracked["size"] == path.stat().st_size
    import hashlib
    import json

    # DVC's directory hash: md5 of the JSON list of {md5, relpath} entries.
    entries = [{"md5": io.file_md5(path), "relpath": path.name}]
    dir_md5 = hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    assert tracked["md5"] == f"{dir_md5}.dir"


def test_raw_table_has_pixels_and_labels(raw_dir):
    cfg = compose([f"paths.raw={raw_dir}"])
    frame = read_raw(cfg)
    assert frame.shape == (1797, 65)
    x, y = to_arrays(frame, cfg.data)
    assert x.shape == (1797, 64) and x.min() == 0 and x.max() == 16
    assert sorted(set(y.tolist())) == list(range(10))


def test_missing_raw_data_says_how_to_make_it(tmp_path):
    with pytest.raises(ArtifactError, match="maas data export"):
        read_raw(compose([f"paths.raw={tmp_path}"]))


def test_a_file_source_needs_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="put your CSV there"):
        export(compose([f"paths.raw={tmp_path}", "data.source=file"]))
    with pytest.raises(ConfigError, match="data.source='s3'"):
        export(compose([f"paths.raw={tmp_path}", "data.source=s3"]))


def test_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    s = stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=1)
    parts = [set(s.train), set(s.val), set(s.test)]
    assert sum(map(len, parts)) == 1000 and len(set.union(*parts)) == 1000
    assert np.bincount(labels[s.test]).tolist() == [15] * 10
    again = stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=1)
    other = stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=2)
    assert np.array_equal(s.test, again.test) and not np.array_equal(s.test, other.test)


@pytest.mark.parametrize("val, test", [(0.0, 0.2), (0.5, 0.5), (0.2, 1.2)])
def test_bad_split_fractions(val, test):
    with pytest.raises(ConfigError, match="fractions"):
        stratified_split(np.arange(10) % 2, val_fraction=val, test_fraction=test, seed=0)


def test_preprocessor_fits_on_what_it_is_given_and_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 17, size=(200, 64)).astype(float)
    train[:, 0] = 0  # a constant pixel must not divide by zero
    pre = Preprocessor.fit(train, "standard", (1, 8, 8))
    out = pre.transform(train)
    assert out.shape == (200, 1, 8, 8) and out.dtype == np.float32
    assert np.allclose(out.reshape(200, -1)[:, 1:].mean(0), 0, atol=1e-5)
    assert np.isfinite(out).all()
    loaded = Preprocessor.load(pre.save(tmp_path / "p.json"))
    assert loaded == pre
    assert np.array_equal(loaded.transform(train), out)


def test_preprocessor_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="data.scaling='robust'"):
        Preprocessor.fit(np.zeros((2, 64)), "robust", (1, 8, 8))
    pre = Preprocessor.fit(np.ones((2, 64)), "minmax", (1, 8, 8))
    with pytest.raises(ArtifactError, match="expected 64 features"):
        pre.transform(np.zeros((1, 63)))
    io.write_json(tmp_path / "x.json", {"kind": "standard"})
    with pytest.raises(ArtifactError, match="not a maas preprocessor"):
        Preprocessor.load(tmp_path / "x.json")


@pytest.mark.parametrize("content", ["", "pixel_0,label\n1,2,3,4\n\"unclosed\n", b"\xff\xfe\x00bad"])
def test_unreadable_csv_is_a_named_data_error(tmp_path, content):
    from maas.errors import DataValidationError

    path = tmp_path / "digits.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataValidationError, match="not a readable CSV table"):
        read_raw(compose([f"paths.raw={tmp_path}"]))


def test_split_names_a_class_too_small_to_stratify():
    from maas.errors import DataValidationError

    labels = np.array([0] * 50 + [1] * 50 + [7] * 2)
    with pytest.raises(DataValidationError, match="class 7 has only 2 row"):
        stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=0)


def test_noise_is_added_in_raw_pixels_and_kept_to_their_range_and_type():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 17, size=(50, 64)).astype(np.float32)
    pre = Preprocessor.fit(raw, "standard", (1, 8, 8), value_range=(0, 16), raw_dtype="int")
    x = pre.transform(raw)
    assert np.allclose(pre.inverse(x), raw, atol=1e-4)
    noisy_raw = pre.inverse(pre.add_noise(x, std=4.0, seed=0))
    assert noisy_raw.min() >= -1e-4 and noisy_raw.max() <= 16 + 1e-4
    assert np.allclose(noisy_raw, np.round(noisy_raw), atol=1e-3)  # still integers
    assert 2.0 < np.abs(noisy_raw - raw).mean() < 4.0  # std 4, clipped at the range's ends
    assert np.array_equal(pre.add_noise(x, 4.0, seed=0), pre.add_noise(x, 4.0, seed=0))


def test_anomaly_auroc_counts_the_pairs_ranked_right():
    from maas.evaluation import anomaly_auroc

    # noisy 0.3 beats both clean scores, noisy 0.05 beats neither: 2 of 4 pairs
    assert anomaly_auroc(np.array([0.1, 0.2]), np.array([0.3, 0.05])) == 0.5
    assert anomaly_auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
