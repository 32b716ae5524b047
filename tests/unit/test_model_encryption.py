"""The packaged model's encryption in-process: keys, what is stored, and how reading it fails.
A built Bento served encrypted (and its archive): tests/e2e/test_serve_secure.py."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from omegaconf import OmegaConf

from maas.cli import main
from maas.errors import ArtifactError, ConfigError
from maas.serving import encryption, integrity
from maas.serving.encryption import ENCRYPTION_ARG, KEY_ENV, KEY_FILE_ENV, ModelKey, build_args, readable, store


@pytest.fixture
def key() -> ModelKey:
    return ModelKey.parse(encryption.new_key(), KEY_ENV)


@pytest.fixture
def model(tmp_path):
    """Plain files as the package stage stages them, and a stored folder for their encrypted copies."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.yaml").write_text("format: maas.model/1\nweights: weights.safetensors\n")
    (plain / "weights.safetensors").write_bytes(os.urandom(4096))
    stored = tmp_path / "stored"
    stored.mkdir()
    return plain, stored


def encrypt_into(plain, stored, key) -> dict:
    for f in sorted(plain.iterdir()):
        store(f, stored / f.name, key)
    return integrity.manifest(sorted(plain.iterdir()))


@pytest.fixture
def stored(model, key):
    """The model's files encrypted with `key`."""
    encrypt_into(*model, key)
    return model[1]


def open_model(stored, recorded: ModelKey, key: ModelKey | None = None, **environ: str) -> None:
    """Read the stored model as a Bento recording `recorded`'s fingerprint does, with `key` (or `environ`'s)."""
    with readable(stored, build_args(recorded)[ENCRYPTION_ARG], key, environ=environ):
        pass


def test_stored_files_are_ciphertext_and_decrypt_in_memory_to_the_packaged_ones(model, key):
    plain, stored = model
    manifest = encrypt_into(plain, stored, key)
    weights = (plain / "weights.safetensors").read_bytes()
    stored_weights = (stored / "weights.safetensors").read_bytes()
    assert weights[:64] not in stored_weights and weights[-64:] not in stored_weights
    assert b"format" not in (stored / "model.yaml").read_bytes()
    again = stored.parent / "again"
    again.mkdir()
    store(plain / "model.yaml", again / "model.yaml", key)
    # The nonce comes from the file's name and content: the same file encrypts to the same bytes (a reproducible
    # Bento), another file (or the same content under another name) to others.
    assert (again / "model.yaml").read_bytes() == (stored / "model.yaml").read_bytes()
    assert stored_weights[len(b"MAASENC1"):][:12] != (stored / "model.yaml").read_bytes()[len(b"MAASENC1"):][:12]

    with readable(stored, build_args(key)[ENCRYPTION_ARG], environ={KEY_ENV: encryption_text(key)}) as view:
        integrity.check(view, manifest)  # the manifest records the plain files
        assert (view / "weights.safetensors").read_bytes() == weights
        # Nothing plain on a disk: links into this process's memory.
        assert all(os.readlink(p).startswith("/proc/self/fd/") for p in view.iterdir())
    assert not view.exists()


def encryption_text(key: ModelKey) -> str:
    import base64

    return base64.urlsafe_b64encode(key.secret).decode()


def test_a_plain_bento_is_read_where_it_is_and_a_set_key_is_warned_about(model, caplog):
    plain, _ = model
    with caplog.at_level(logging.WARNING, logger="maas.serving"):
        with readable(plain, None, environ={KEY_FILE_ENV: "/etc/maas/model.key"}) as view:
            assert view == plain
    assert "MAAS_MODEL_KEY_FILE is set, but this Bento's model is not encrypted" in caplog.text


def test_no_key_names_both_variables(stored, key):
    with pytest.raises(ConfigError, match=f"this Bento's model is encrypted \\(AES-256-GCM, key fingerprint "
                                          f"{key.key_id}\\): set MAAS_MODEL_KEY to the key, or MAAS_MODEL_KEY_FILE"):
        open_model(stored, key)


def test_another_key_is_named_a_wrong_key_by_its_fingerprint(stored, key):
    other = ModelKey.parse(encryption.new_key(), KEY_ENV)
    with pytest.raises(ArtifactError, match=f"^wrong key or tampered file: MAAS_MODEL_KEY is the key of fingerprint "
                                            f"{other.key_id}, but .* fingerprint {key.key_id}$"):
        open_model(stored, key, other)


def test_the_bentos_fingerprint_forged_to_another_keys_still_fails_to_decrypt(stored):
    other = ModelKey.parse(encryption.new_key(), KEY_ENV)
    with pytest.raises(ArtifactError, match=r"model\.yaml does not decrypt with MAAS_MODEL_KEY \(wrong key or tampered "
                                            r"file\); weights\.safetensors does not decrypt"):
        open_model(stored, other, other)


def flip_a_byte(stored):
    blob = bytearray((stored / "weights.safetensors").read_bytes())
    blob[100] ^= 1
    (stored / "weights.safetensors").write_bytes(bytes(blob))
    return "weights.safetensors does not decrypt with MAAS_MODEL_KEY (wrong key or tampered file)"


def swap_names(stored):
    """Each file under the other's name: both are whole ciphertexts of this key, but not of those names."""
    a, b = stored / "model.yaml", stored / "weights.safetensors"
    tmp = stored / "tmp"
    a.rename(tmp), b.rename(a), tmp.rename(b)
    return "model.yaml does not decrypt"


def plain_file_added(stored):
    (stored / "notes.txt").write_text("left here by hand\n")
    return "notes.txt is not a file maas encrypted (tampered file)"


def folder_added(stored):
    (stored / "extra").mkdir()
    (stored / "extra" / "x.bin").write_bytes(b"x")
    return "extra/x.bin is there but was not packaged (tampered file)"


@pytest.mark.parametrize("tamper", [flip_a_byte, swap_names, plain_file_added, folder_added])
def test_a_tampered_store_is_refused_naming_the_file(stored, key, tamper):
    expected = tamper(stored)
    with pytest.raises(ArtifactError, match="^the encrypted model in .* can't be read: ") as e:
        open_model(stored, key, key)
    assert expected in str(e.value)


def test_an_older_models_ciphertext_under_the_same_name_is_caught_by_the_manifest(model, key, tmp_path):
    plain, stored = model
    manifest = encrypt_into(plain, stored, key)
    (plain / "weights.safetensors").write_bytes(os.urandom(4096))  # another model's weights, same key and name
    store(plain / "weights.safetensors", stored / "weights.safetensors", key)
    with readable(stored, build_args(key)[ENCRYPTION_ARG], key) as view:
        with pytest.raises(ArtifactError, match="weights.safetensors has sha256 .* \\(changed\\)"):
            integrity.check(view, manifest)


@pytest.mark.parametrize("value, length", [("", 0), ("short", 5), ("a" * 64, 64), ("!" * 43, 43)])
def test_a_key_that_is_not_256_bits_of_base64_is_refused_and_not_echoed(value, length):
    with pytest.raises(ConfigError, match=f"^MAAS_MODEL_KEY must hold a 256-bit key in base64 .* it holds {length} "
                                          "characters") as e:
        ModelKey.from_env({KEY_ENV: value})
    assert not value or value not in str(e.value)


def test_the_key_comes_from_one_variable(tmp_path, key):
    text = encryption_text(key)
    (tmp_path / "model.key").write_text(text + "\n")
    assert ModelKey.from_env({KEY_ENV: text}).key_id == key.key_id
    from_file = ModelKey.from_env({KEY_FILE_ENV: str(tmp_path / "model.key")})
    assert from_file.key_id == key.key_id and from_file.source == f"MAAS_MODEL_KEY_FILE={tmp_path / 'model.key'}"
    assert ModelKey.from_env({}) is None
    with pytest.raises(ConfigError, match="both MAAS_MODEL_KEY and MAAS_MODEL_KEY_FILE are set: set one"):
        ModelKey.from_env({KEY_ENV: text, KEY_FILE_ENV: str(tmp_path / "model.key")})
    with pytest.raises(ConfigError, match="MAAS_MODEL_KEY_FILE=/nonexistent/model.key is unreadable"):
        ModelKey.from_env({KEY_FILE_ENV: "/nonexistent/model.key"})
    assert text not in repr(key) and "secret" not in repr(key)


def test_the_package_stage_needs_a_key_only_when_asked_to_encrypt(key):
    cfg = lambda value: OmegaConf.create({"serve": {"encrypt": value}})  # noqa: E731
    assert encryption.package_key(cfg(False), {KEY_ENV: encryption_text(key)}) is None
    assert encryption.package_key(cfg(True), {KEY_ENV: encryption_text(key)}).key_id == key.key_id
    with pytest.raises(ConfigError, match="serve.encrypt=true needs the model key: set MAAS_MODEL_KEY"):
        encryption.package_key(cfg(True), {})
    with pytest.raises(ConfigError, match="serve.encrypt='yes' must be true or false"):
        encryption.package_key(cfg("yes"), {})


def test_an_encrypted_model_is_another_stored_model_and_its_bento_pins_cryptography(model, key):
    from maas.stages.package import content_version, service_requirements

    plain, _ = model
    files = sorted(plain.iterdir())
    other = ModelKey.parse(encryption.new_key(), KEY_ENV)
    versions = {content_version(files), content_version(files, key), content_version(files, other)}
    assert len(versions) == 3 and content_version(files, key) == content_version(files, key)
    assert "cryptography==" in service_requirements("torch", "image", encrypted=True)
    assert "cryptography" not in service_requirements("torch", "image")


def test_cli_model_key_new_prints_a_key_or_writes_a_new_private_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not a maas project: a serving host has only the key
    assert main(["model-key", "new"]) == 0
    out = capsys.readouterr()
    printed = ModelKey.parse(out.out.strip(), "stdout")
    assert f"key fingerprint {printed.key_id}" in out.err

    assert main(["model-key", "new", "--file", "model.key"]) == 0
    written = ModelKey.from_env({KEY_FILE_ENV: "model.key"})
    assert written.key_id != printed.key_id and written.key_id in capsys.readouterr().out
    assert stat.S_IMODE((tmp_path / "model.key").stat().st_mode) == 0o600
    before = (tmp_path / "model.key").read_text()
    assert main(["model-key", "new", "--file", "model.key"]) == 2  # never over a key a model may need
    assert "model.key exists" in capsys.readouterr().err
    assert (tmp_path / "model.key").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.key"]  # no temp file left
