"""`maas serve`'s TLS flags, checked before the server starts. Over HTTPS: tests/e2e/test_serve_secure.py."""

from __future__ import annotations

import pytest

from conftest import make_certificate
from maas.errors import ConfigError
from maas.serving.tls import CERT_ENV, KEY_ENV, serve_flags


def test_no_certificate_means_plain_http():
    assert serve_flags(None, None, {}) == []


def test_flags_or_the_environment_name_the_files_bentoml_serve_gets(tmp_path):
    cert, key = make_certificate(tmp_path)
    expected = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    assert serve_flags(str(cert), str(key), {}) == expected
    assert serve_flags(None, None, {CERT_ENV: str(cert), KEY_ENV: str(key)}) == expected
    other = tmp_path / "other"
    other.mkdir()
    other_cert, other_key = make_certificate(other)
    # A flag wins over the environment.
    assert serve_flags(str(cert), str(key), {CERT_ENV: str(other_cert), KEY_ENV: str(other_key)}) == expected


def test_a_certificate_without_a_key_is_refused(tmp_path):
    cert, _ = make_certificate(tmp_path)
    with pytest.raises(ConfigError, match="HTTPS needs both a certificate and its key: .* only the certificate"):
        serve_flags(str(cert), None, {})


def test_a_key_of_another_certificate_is_refused_naming_both(tmp_path):
    cert, _ = make_certificate(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = make_certificate(tmp_path / "other")
    with pytest.raises(ConfigError, match=f"the TLS certificate {cert} and key {other_key} don't load"):
        serve_flags(str(cert), str(other_key), {})


def test_a_missing_file_or_a_password_protected_key_is_refused(tmp_path):
    cert, key = make_certificate(tmp_path, password=b"secret")
    with pytest.raises(ConfigError, match="the TLS key file .*missing.pem is missing or unreadable"):
        serve_flags(str(cert), str(tmp_path / "missing.pem"), {})
    with pytest.raises(ConfigError, match="the TLS key file is password-protected"):
        serve_flags(str(cert), str(key), {})


def test_maas_serve_checks_its_tls_flags_before_anything_else(tmp_path, capsys):
    from maas.cli import main

    cert, _ = make_certificate(tmp_path)
    assert main(["serve", "--ssl-certfile", str(cert)]) == 2
    assert "HTTPS needs both a certificate and its key" in capsys.readouterr().err
