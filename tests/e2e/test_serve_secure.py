"""An encrypted Bento (serve.encrypt=true) served over HTTPS with a certificate this test makes.

The session's tiny run is packaged once more with serve.encrypt=true and a key made by `maas model-key
new`; the stored model and the exported archive must hold no plain model bytes; `maas serve` of it
over HTTPS (the client trusting only that certificate) must answer as the plain model does; and
`bentoml serve` of it without the key, or with another key, must exit naming the problem.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tarfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import BIN, copy_outputs, free_port, make_certificate, serving_project, start, stop
from maas.serving.encryption import ENCRYPTION_ARG, KEY_ENV, KEY_FILE_ENV, ModelKey

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encrypted(tiny_run, tmp_path_factory):
    """The tiny run's model packaged with serve.encrypt=true: (cfg, package summary, key file, work dir)."""
    from maas.stages import package

    work = tmp_path_factory.mktemp("secure")
    cfg = copy_outputs(tiny_run[0], work, "bento", "reports")  # what package writes; the rest is read
    OmegaConf.update(cfg, "serve.encrypt", True)
    key_file = work / "model.key"
    subprocess.run([str(BIN / "maas"), "model-key", "new", "--file", str(key_file)], check=True, capture_output=True)
    with pytest.MonkeyPatch.context() as env:  # as `dvc repro` hands the package stage its environment
        env.setenv(KEY_FILE_ENV, str(key_file))
        summary = package.run(cfg)
    return cfg, summary, key_file, work


def needles(cfg) -> dict[str, bytes]:
    """Pieces of the plain model that must not be found in what is stored: the weights' safetensors header,
    high-entropy runs of their tensor bytes, and model.yaml."""
    from maas.model_files import read_spec

    compressed = Path(cfg.paths.compressed)
    weights = (compressed / read_spec(compressed)["weights"]).read_bytes()
    start_of_data = 8 + int.from_bytes(weights[:8], "little")
    found = {"weights header": weights[8:start_of_data], "model.yaml": (compressed / "model.yaml").read_bytes()}
    for offset in range(start_of_data, len(weights) - 32, max(32, (len(weights) - start_of_data) // 16)):
        if len(set(weights[offset:offset + 32])) >= 16:  # never a run of padding that a tar also has
            found[f"weights[{offset}:{offset + 32}]"] = weights[offset:offset + 32]
    assert len(found) > 6
    return found


def test_the_stored_model_and_its_archive_hold_no_plain_model_bytes(encrypted):
    import bentoml
    import yaml

    cfg, summary, key_file, _ = encrypted
    plain = needles(cfg)
    stored = Path(bentoml.models.get(summary["model_tag"]).path_of("maas"))
    stored_files = {p.name: p.read_bytes() for p in stored.iterdir()}
    assert "model.yaml" in stored_files and "lineage.json" in stored_files and len(stored_files) == 7
    for name, data in stored_files.items():
        assert data.startswith(b"MAASENC1"), name
        assert not [what for what, needle in plain.items() if needle in data], name

    (archive,) = Path(cfg.paths.bento).glob("*.bento")
    key = key_file.read_text().strip()
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    encrypted_in_archive = [n for n in members if Path(n).parts[0] == "models" and Path(n).parts[-2] == "maas"]
    assert len(encrypted_in_archive) == 7, sorted(members)  # the model files with lineage.json
    for name, data in members.items():
        assert not [what for what, needle in plain.items() if needle in data], name
        assert key.encode() not in data, name  # the key travels nowhere in the Bento
    (bento_yaml,) = [data for name, data in members.items() if name.split("/")[-1] == "bento.yaml"]
    recorded = yaml.safe_load(bento_yaml)["args"][ENCRYPTION_ARG]
    assert recorded == {"cipher": "AES-256-GCM", "key_id": ModelKey.from_env({KEY_FILE_ENV: str(key_file)}).key_id}
    (requirements,) = [data for name, data in members.items() if name.endswith("env/python/requirements.txt")]
    assert b"cryptography==" in requirements


def test_it_is_served_over_https_and_answers_as_the_plain_model(encrypted, tmp_path):
    from maas import model_files
    from maas.data.preprocessor import Preprocessor
    from maas.data.sources import read_raw, to_arrays

    cfg, summary, key_file, _ = encrypted
    cert, tls_key = make_certificate(tmp_path)
    x, _ = to_arrays(read_raw(cfg), cfg.data)
    raw = x[:40]
    pre = Preprocessor.load(Path(cfg.paths.processed) / "preprocessor.json")
    expected = model_files.load(cfg.paths.compressed).predictor.predict(pre.transform(raw)).proba
    trusting = ssl.create_default_context(cafile=str(cert))  # this certificate, and no other
    with serving_project(cfg, tmp_path / "serve", MAAS_MODEL_KEY_FILE=str(key_file), MAAS_SSL_CERTFILE=str(cert),
                         MAAS_SSL_KEYFILE=str(tls_key)) as url:
        assert url.startswith("https://")
        r = httpx.post(f"{url}/predict", json={"images": raw.reshape(-1, 8, 8).astype(int).tolist()}, timeout=30,
                       verify=trusting)
        assert r.status_code == 200, r.text
        assert np.allclose(r.json()["probabilities"], expected, atol=1e-5)
        assert r.json()["classes"] == expected.argmax(1).tolist()
        card = httpx.get(f"{url}/metadata", verify=trusting, timeout=10).json()
        assert card["bento_tag"] == summary["bento_tag"] and card["model_tag"] == summary["model_tag"]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/livez", timeout=10)  # a client that doesn't trust the certificate
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/livez", timeout=10)  # no plain HTTP beside it
    assert "--ssl-certfile" in (tmp_path / "serve" / "serve.log").read_text()


def test_without_its_key_or_with_another_the_server_exits_naming_the_problem(encrypted, tmp_path):
    """Both at once (each its own store): the two cold starts share the wait."""
    from maas.serving.encryption import new_key

    cfg, summary, key_file, work = encrypted
    fingerprint = ModelKey.from_env({KEY_FILE_ENV: str(key_file)}).key_id
    other = new_key()
    cases = {"no key": ({}, f"this Bento's model is encrypted (AES-256-GCM, key fingerprint {fingerprint}): set "
                            f"{KEY_ENV} to the key, or {KEY_FILE_ENV}"),
             "another key": ({KEY_ENV: other}, f"wrong key or tampered file: {KEY_ENV} is the key of fingerprint "
                                               f"{ModelKey.parse(other, KEY_ENV).key_id}, but this Bento's model was "
                                               f"encrypted with the key of fingerprint {fingerprint}")}
    procs = {}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    try:
        for i, (case, (env, _)) in enumerate(cases.items()):
            home = tmp_path / f"bentoml-{i}"
            for kind, tag in (("bentos", summary["bento_tag"]), ("models", summary["model_tag"])):
                # Just this Bento and its model, out of the session's store.
                name, version = tag.split(":")
                shutil.copytree(Path(os.environ["BENTOML_HOME"], kind, name, version), home / kind / name / version)
            procs[case] = start([str(BIN / "bentoml"), "serve", summary["bento_tag"], "--port", str(free_port())],
                                tmp_path / f"{i}.log", env={**environ, "BENTOML_HOME": str(home), **env})
        for proc in procs.values():
            proc.wait(timeout=120)
    finally:
        for proc in procs.values():
            stop(proc)
    for i, (case, (_, message)) in enumerate(cases.items()):
        log = (tmp_path / f"{i}.log").read_text()
        assert procs[case].returncode != 0, (case, log[-3000:])
        assert message in log, (case, log[-3000:])
        assert other not in log
