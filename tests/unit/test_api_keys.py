"""API keys in-process: the keys file's format, its reload while serving, the CLI, and which routes need a key.
Over HTTP against the real server: tests/e2e/test_serve_keys.py."""

from __future__ import annotations

import hashlib
import io as stdio
import logging

import pytest

from maas.cli import main
from maas.errors import ConfigError
from maas.serving.auth import is_open, needed_role
from maas.serving.keys import FILE_ENV, PLAIN_ENV, Keys, allows, hash_key, new_key, parse, revoke

A, B = "a" * 64, "B" * 64
PLAIN = "kV3nq9x_7pLr2Ws0-hJd"  # 20 characters: long enough for MAAS_API_KEYS


def test_hash_is_sha256_hex_of_the_key():
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 example


def test_parse_skips_comments_and_blank_lines_and_keeps_names():
    entries = parse(f"# keys of the digits service\n\n{A}\n  {B}   #  alice  \n", "keys.txt")
    assert [(e.digest, e.name, e.line) for e in entries] == [(A, None, 3), ("b" * 64, "alice", 4)]


@pytest.mark.parametrize("line", [PLAIN, A[:63], A + "0", f"sha256:{A}", f"{A}admin", f"{A} {PLAIN}"])
def test_a_line_that_is_not_a_hash_is_named_by_number_and_not_echoed(line):
    with pytest.raises(ConfigError, match=r"^keys\.txt: line 2 is not a key hash") as e:
        parse(f"{A}\n{line}\n", "keys.txt")
    assert line not in str(e.value) and PLAIN not in str(e.value)  # a pasted key must not reach the log


def test_a_line_may_give_a_role_and_without_one_it_is_predict():
    """Files written before roles keep working, and none of their keys gains a right."""
    entries = parse(f"{A}\n{B}  admin  # ops\n{'c' * 64} predict\n", "keys.txt")
    assert [(e.role, e.name) for e in entries] == [("predict", None), ("admin", "ops"), ("predict", None)]


@pytest.mark.parametrize("role", ["alice", "Admin", "root", "PlainKeyPastedHere1234"])
def test_an_unknown_role_is_refused_naming_the_line_and_the_roles_but_not_the_word(role):
    with pytest.raises(ConfigError, match=r"^keys\.txt: line 1 names a role that is not predict or admin") as e:
        parse(f"{A} {role}  # x\n", "keys.txt")
    assert role not in str(e.value)


def test_admin_may_do_what_predict_may_and_more():
    assert allows("admin", "predict") and allows("admin", "admin") and allows("predict", "predict")
    assert not allows("predict", "admin")


@pytest.mark.parametrize("path, role", [("/predict", "predict"), ("/schema.json", "predict"), ("/metrics", "predict"),
                                        ("/metadata", "admin"), ("/lineage", "admin"), ("/predict/", "admin"),
                                        ("/no-such-route", "admin")])
def test_prediction_routes_need_predict_and_every_other_keyed_route_admin(path, role):
    assert needed_role(path) == role  # a route added later is admin's until listed as a prediction route


def test_no_variable_set_means_no_keys():
    assert Keys.from_env({}) is None


@pytest.mark.parametrize("env, message", [
    ({FILE_ENV: "/nonexistent/keys.txt"}, "MAAS_API_KEYS_FILE=/nonexistent/keys.txt is unreadable"),
    ({FILE_ENV: ""}, "MAAS_API_KEYS_FILE is set but empty"),
    ({PLAIN_ENV: ""}, "MAAS_API_KEYS is set but holds no keys"),
    ({PLAIN_ENV: f"{PLAIN},short"}, "MAAS_API_KEYS: key 2 of 2 must be at least 16 characters"),
    ({PLAIN_ENV: f"{PLAIN} with spaces"}, "MAAS_API_KEYS: key 1 of 1 must be"),
])
def test_bad_key_settings_refuse_to_load_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Keys.from_env(env)


def test_an_unreadable_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigError, match=f"MAAS_API_KEYS_FILE={path} is unreadable"):
        Keys.from_env({FILE_ENV: str(path)})


def test_env_keys_are_plain_and_comma_separated():
    keys = Keys.from_env({PLAIN_ENV: f" {PLAIN} , {PLAIN[::-1]}"})
    assert keys.accepts(PLAIN) and keys.accepts(PLAIN[::-1])
    assert not keys.accepts(hash_key(PLAIN)) and not keys.accepts(PLAIN[:-1])


def test_env_keys_take_a_role_before_a_colon_and_default_to_predict():
    other = PLAIN.upper()
    keys = Keys.from_env({PLAIN_ENV: f"admin:{PLAIN}, {other}, predict:{PLAIN[::-1]}"})
    assert (keys.role(PLAIN), keys.role(other), keys.role(PLAIN[::-1])) == ("admin", "predict", "predict")
    assert keys.role(f"admin:{PLAIN}") is None
    with pytest.raises(ConfigError, match="MAAS_API_KEYS: key 2 of 2 has a role that is not predict or admin") as e:
        Keys.from_env({PLAIN_ENV: f"{PLAIN},root:{other}"})
    assert other not in str(e.value)


def test_a_key_listed_twice_has_the_higher_role(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"{hash_key(PLAIN)}  predict\n{hash_key(PLAIN)}  admin  # ops\n")
    assert Keys.from_env({FILE_ENV: str(path)}).role(PLAIN) == "admin"
    assert Keys.from_env({FILE_ENV: str(path), PLAIN_ENV: f"predict:{PLAIN}"}).role(PLAIN) == "admin"


def test_the_file_is_reread_when_it_changes_and_a_broken_one_keeps_the_last_good_keys(tmp_path, caplog):
    path = tmp_path / "keys.txt"
    first, _ = new_key(path, "first")
    keys = Keys.from_env({FILE_ENV: str(path)})
    assert keys.accepts(first) and not keys.accepts("x" * 43)

    second, _ = new_key(path, "second")  # added while "serving": no new Keys
    assert keys.accepts(second)
    revoke(path, "first")
    assert not keys.accepts(first) and keys.accepts(second)

    good = path.read_text()
    path.write_text(good + "not a hash\n")  # edited in place, badly
    with caplog.at_level(logging.INFO, logger="maas.serving"):
        assert keys.accepts(second) and keys.accepts(second)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text  # once per change of the file, not per request
    assert f"MAAS_API_KEYS_FILE={path}: line 2 is not a key hash" in errors[0].getMessage()

    path.unlink()  # a missing file keeps the last good keys too
    assert keys.accepts(second)
    path.write_text(good.replace(hash_key(second), hash_key(first)))
    assert keys.accepts(first) and not keys.accepts(second)


def test_an_empty_file_accepts_nothing(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("# every key revoked\n")
    keys = Keys.from_env({FILE_ENV: str(path)})
    assert keys is not None and not keys.accepts("") and not keys.accepts("anything-at-all-here")


def test_cli_new_prints_a_key_and_appends_only_its_hash(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not a maas project: a serving host has only the keys file
    path = tmp_path / "keys.txt"
    path.write_text(f"# ours\n{A}")  # no newline at the end
    assert main(["api-key", "new", "--file", "keys.txt", "--name", "alice"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 43 and key not in path.read_text()
    assert path.read_text() == f"# ours\n{A}\n{hashlib.sha256(key.encode()).hexdigest()}  predict  # alice\n"

    assert main(["api-key", "new", "--file", "keys.txt", "--name", "alice"]) == 2
    assert "already has a key named alice" in capsys.readouterr().err
    assert main(["api-key", "new", "--file", "keys.txt", "--name", "has space"]) == 2

    assert main(["api-key", "revoke", "--file", "keys.txt", "alice"]) == 0
    assert path.read_text() == f"# ours\n{A}\n"
    assert main(["api-key", "revoke", "--file", "keys.txt", A.upper()]) == 0  # by hash
    assert path.read_text() == "# ours\n"
    assert main(["api-key", "revoke", "--file", "keys.txt", "alice"]) == 2
    assert "no key named or hashed 'alice'" in capsys.readouterr().err


def test_cli_new_gives_the_role_asked_for(tmp_path, capsys):
    path = tmp_path / "keys.txt"
    assert main(["api-key", "new", "--file", str(path), "--name", "ops", "--role", "admin"]) == 0
    admin = capsys.readouterr().out.strip()
    assert main(["api-key", "new", "--file", str(path)]) == 0
    predict = capsys.readouterr().out.strip()
    keys = Keys.from_env({FILE_ENV: str(path)})
    assert (keys.role(admin), keys.role(predict)) == ("admin", "predict")
    with pytest.raises(SystemExit):
        main(["api-key", "new", "--file", str(path), "--role", "root"])
    assert "invalid choice: 'root'" in capsys.readouterr().err


def test_cli_new_refuses_to_append_to_a_broken_file(tmp_path, capsys):
    path = tmp_path / "keys.txt"
    path.write_text(f"{PLAIN}\n")
    assert main(["api-key", "new", "--file", str(path)]) == 2
    assert "line 1 is not a key hash" in capsys.readouterr().err
    assert path.read_text() == f"{PLAIN}\n"


def test_cli_hash_reads_the_key_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", stdio.StringIO("abc\n"))
    assert main(["api-key", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("abc")


@pytest.mark.parametrize("path, metrics_require_key, expected", [
    ("/livez", True, True), ("/readyz", True, True), ("/healthz", True, True),
    ("/", True, True), ("/docs.json", True, True), ("/static_content/swagger-ui.css", True, True),
    ("/metrics", False, True), ("/metrics", True, False),
    ("/predict", False, False), ("/metadata", False, False), ("/schema.json", False, False),
    ("/livez/", False, False), ("/static_content", False, False), ("/docs.json/x", False, False),
])
def test_only_health_docs_and_maybe_metrics_are_open(path, metrics_require_key, expected):
    assert is_open(path, metrics_require_key) is expected


def test_metrics_needs_a_key_when_the_service_settings_say_so(monkeypatch):
    """RequireKey reads serve.metrics_require_key from the running service's settings."""
    import asyncio
    from types import SimpleNamespace

    import httpx
    from _bentoml_sdk.service import set_current_service
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from maas.serving.auth import RequireKey
    from maas.serving.settings import ServeSettings

    monkeypatch.setenv(PLAIN_ENV, PLAIN)
    monkeypatch.delenv(FILE_ENV, raising=False)
    app = Starlette(routes=[Route("/metrics", lambda _: PlainTextResponse("m 1\n"))])
    app.add_middleware(RequireKey)

    async def status(**headers) -> int:
        # ASGITransport sends no lifespan: RequireKey loads the keys on the first request instead.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://maas") as client:
            return (await client.get("/metrics", headers=headers)).status_code

    try:
        for required, expected in ((True, 401), (False, 200)):
            set_current_service(SimpleNamespace(settings=ServeSettings(metrics_require_key=required)))
            assert asyncio.run(status()) == expected
            assert asyncio.run(status(Authorization=f"Bearer {PLAIN}")) == 200  # a predict key may scrape
    finally:
        set_current_service(None)
