"""Shared fixtures: a tiny config in a temp dir, one tiny pipeline run per session,
and real servers (Prefect) for the end-to-end tests.

Everything the tools keep in a home directory (BentoML's store, Prefect's
database) goes to a temp dir so the tests never touch the user's.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The API key the session's server (`served`) accepts: every request to a keyed route sends it.
SERVE_KEY = "maas-tests-serve-key-0123456789"
SERVE_AUTH = {"Authorization": f"Bearer {SERVE_KEY}"}

_HOME = Path(tempfile.mkdtemp(prefix="maas-tests-"))
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# dvc.yaml and flows call `maas`; the tests' interpreter's scripts must be found first.
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
os.environ.pop("PREFECT_API_URL", None)
os.chdir(ROOT)


def tiny_overrides(workdir: Path, raw: Path) -> list[str]:
    """A config that runs every stage in seconds, writing under `workdir`."""
    # trainer.device=cpu: these tests mean CPU (bit-exact resume, timings) even on a CUDA machine.
    # compress: one method, timed briefly (compress=auto has its own tests), kept when it is the smaller
    # within budget: with fastest_within, a variant as fast as fp32 is kept or not as the machine's noise says.
    return ["trainer=fast", "trainer.device=cpu", "gates=none", "compress=int8_weights", "compress.latency.rounds=5",
            "compress.select=smallest_within",
            f"paths.raw={raw}",
            *(f"paths.{k}={workdir / k}" for k in ("validated", "processed", "trained", "compressed", "reports",
                                                   "bento", "checkpoints"))]


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    from maas.data.sources import export_digits

    raw = tmp_path_factory.mktemp("raw")
    export_digits(raw / "digits.csv")
    return raw


@pytest.fixture
def tiny_cfg(tmp_path, raw_dir):
    from maas.config import compose

    return compose(tiny_overrides(tmp_path, raw_dir))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, raw_dir):
    """All six stages once on the tiny config; tests read its outputs and must not change them."""
    from maas.config import compose
    from maas.registry import all_stages

    work = tmp_path_factory.mktemp("tiny-run")
    cfg = compose(tiny_overrides(work, raw_dir))
    summaries = {s.name: s.run(cfg) for s in all_stages()}
    return cfg, summaries


def make_project(dest: Path) -> Path:
    """A bare maas project at `dest`: the config tree and the files that mark its root."""
    shutil.copytree(ROOT / "conf", dest / "conf")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def sh(cwd: Path, *argv: str, check: bool = True, **kwargs) -> str:
    """Run a command; fail with its output unless it succeeds (or check=False). Returns stdout + stderr."""
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, **kwargs)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out.stdout + out.stderr


def git_project(dest: Path) -> Path:
    """The project's files (tracked or not yet tracked, never ignored) in a fresh git repo with one
    commit (dvclive needs one to attach to), and the raw data exported as data.dvc records it."""
    files = sh(ROOT, "git", "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    git = ["git", "-c", "user.name=maas-tests", "-c", "user.email=tests@maas.invalid"]
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, *git, "commit", "-qm", "copy")
    sh(dest, "maas", "data", "export")
    sh(dest, "dvc", "commit", "--force", "--quiet", "data.dvc")  # into this copy's DVC cache, as `dvc pull` leaves it
    return dest


def copy_outputs(cfg, tmp_path: Path, *keys: str):
    """Copy the tiny run's outputs for `keys` into tmp_path and point a copy of cfg at them."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    for key in keys:
        src = Path(OmegaConf.select(cfg, f"paths.{key}"))
        shutil.copytree(src, tmp_path / key)
        OmegaConf.update(cfg, f"paths.{key}", str(tmp_path / key))
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, verify=True) -> None:
    """Wait until `url` answers 200; fail early if the server process died. `verify`: httpx's (an
    ssl.SSLContext trusting the server's certificate, for an https URL)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def start(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start a server in its own process group, so `stop` also ends the workers it spawns."""
    with open(log, "w") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    """The session's Prefect server home: its SQLite database and its log, server.log."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def prefect_server(prefect_home):
    """One real Prefect server (SQLite) for the session; flows find it through PREFECT_API_URL.
    It starts in the project root, so it reads prefect.toml as `prefect server start` does there."""
    home = prefect_home
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false"}
    proc = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 home / "server.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{url}/health", proc, timeout=120)
        yield url
    finally:
        stop(proc)


def without_venv_on_path() -> dict[str, str]:
    """The environment of a shell that never activated the venv: `bentoml` is not on PATH."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != BIN.resolve()]
    return {**os.environ, "PATH": os.pathsep.join(path)}


SERVED_BODY_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def served(tiny_run, tmp_path_factory):
    """`<venv>/bin/maas serve` as a user types it: from a project's subfolder, whose params.yaml names
    the Bento folder relatively, with an empty BentoML store and without the venv on PATH; keyed with
    a keys file holding SERVE_KEY's hash (tests may add and revoke their own keys in it)."""
    from omegaconf import OmegaConf

    from maas.params_file import write_params
    from maas.serving.keys import hash_key

    cfg, summaries = tiny_run
    work = tmp_path_factory.mktemp("serve")
    project = make_project(work / "project")
    shutil.copytree(cfg.paths.bento, project / "models" / "bento")
    local = OmegaConf.merge(cfg, {"paths": {"bento": "models/bento"}})
    write_params(local, project / "params.yaml")
    keys_file = work / "api-keys.txt"
    keys_file.write_text(f"{hash_key(SERVE_KEY)}  admin  # tests\n")  # admin: tests read /metadata too
    # A short body timeout (the Bento's own is 10 s) so the slow-client tests get their 408 quickly;
    # it also shows that MAAS_SERVE_* reaches a built Bento.
    env = {**without_venv_on_path(), "BENTOML_HOME": str(work / "bentoml"),
           "MAAS_API_KEYS_FILE": "../../api-keys.txt",  # relative to where `maas serve` is typed: project/conf
           "MAAS_SERVE_BODY_TIMEOUT_S": str(SERVED_BODY_TIMEOUT_S)}
    assert shutil.which("bentoml", path=env["PATH"]) != str(BIN / "bentoml")
    port = free_port()
    proc = start([str(BIN / "maas"), "serve", "--port", str(port)], work / "serve.log", env=env,
                 cwd=project / "conf")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
        yield {"url": f"http://127.0.0.1:{port}", "home": work / "bentoml", "cfg": cfg,
               "bento_tag": summaries["package"]["bento_tag"], "log": work / "serve.log", "keys_file": keys_file,
               "key": SERVE_KEY, "headers": SERVE_AUTH, "body_timeout_s": SERVED_BODY_TIMEOUT_S}
    finally:
        stop(proc)


@contextmanager
def serving_project(cfg, work: Path, **env: str) -> Iterator[str]:
    """`<venv>/bin/maas serve` of the Bento `cfg`'s run packaged, from a new project holding it, with an empty
    BentoML store under `work`, no API keys and the venv not on PATH, as a user runs it; yields the URL
    (https when `env` names a certificate, MAAS_SSL_CERTFILE, which must then be for 127.0.0.1)."""
    from omegaconf import OmegaConf

    from maas.params_file import write_params

    project = make_project(work / "project")
    shutil.copytree(cfg.paths.bento, project / "models" / "bento")
    write_params(OmegaConf.merge(cfg, {"paths": {"bento": "models/bento"}}), project / "params.yaml")
    environ = {k: v for k, v in without_venv_on_path().items() if not k.startswith("MAAS_API_KEYS")}
    environ.update(BENTOML_HOME=str(work / "bentoml"), **env)
    port = free_port()
    proc = start([str(BIN / "maas"), "serve", "--port", str(port)], work / "serve.log", env=environ, cwd=project)
    tls = "MAAS_SSL_CERTFILE" in env
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc, timeout=120,
                  verify=ssl.create_default_context(cafile=env["MAAS_SSL_CERTFILE"]) if tls else True)
        yield url
    finally:
        stop(proc)


def make_certificate(directory: Path, password: bytes | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM, encrypted with `password` if
    given), made with `cryptography`: (cert.pem, key.pem). A client trusts the server by trusting cert.pem."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maas tests")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return cert_file, key_file


def own_store(served: dict, dest: Path) -> Path:
    """A copy of the served BentoML store for a second server: BentoML clears its Prometheus
    files under BENTOML_HOME when a server starts, so sharing the store would reset the
    session server's /metrics."""
    shutil.copytree(served["home"], dest, symlinks=True, ignore=shutil.ignore_patterns("prometheus_multiproc_dir"))
    return dest


def run_probe(script: str, tmp: Path) -> dict:
    """Run `script` (which builds a BentoML app and prints a JSON object last) in a fresh interpreter, with
    its own Prometheus directory and BentoML home, and return that object. A fresh process because BentoML
    fixes its metrics mode and patches at import."""
    import json

    (tmp / "prometheus").mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"), "BENTOML_HOME": str(tmp / "bentoml")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
