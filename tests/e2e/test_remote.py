"""DVC remotes for real, in a temp git + DVC repo on the tiny config: two revisions pushed to an S3 remote
(dvc-s3 against moto's S3 server on loopback); a fresh clone checks out the earlier one, pulls it, serves
its Bento without retraining and rebuilds its model to the same metrics; tampered cache and remote
objects are caught by their hashes and never used."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conftest import BIN, ROOT, free_port, git_project, sh, start, stop, tiny_overrides, wait_http
from maas import io

pytestmark = pytest.mark.slow

BUCKET = "maas-remote"
STAGES = ["validate", "preprocess", "train", "evaluate", "compress", "package"]
CLEAN = "Data and pipelines are up to date"
# compress=none and 8 channels: the stages these tests run twice stay short.
TINY = [o for o in tiny_overrides(Path("."), Path(".")) if not o.startswith("paths.")] + ["compress=none",
                                                                                          "model.channels=8"]
IMAGE = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
         [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
         [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def readme_s3_lines() -> list[str]:
    """The README's two lines that switch a project to S3 (the first code block of its remotes section)."""
    section = (ROOT / "README.md").read_text().split("## Share data and models: DVC remotes", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("dvc remote ") for line in lines), lines
    return lines


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """One moto S3 server on loopback for the module, with the bucket the remote lives in."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    aws = tmp_path_factory.mktemp("aws")  # no AWS config or credentials of the user's are read
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "maas-tests", "AWS_SECRET_ACCESS_KEY": "maas-tests",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(aws / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials")}
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="maas-tests",
                          aws_secret_access_key="maas-tests", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield SimpleNamespace(url=url, env=env, client=client)
    finally:
        server.stop()


def commit(project: Path, message: str) -> str:
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=maas-tests", "-c", "user.email=tests@maas.invalid", "commit", "-qm", message)
    return sh(project, "git", "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def origin(tmp_path_factory, s3):
    """Two revisions, each reproduced, committed (dvc.lock too) and pushed to S3: A, the tiny config
    switched to S3 by the README's two lines; B, the same trained for one epoch instead of two."""
    project = git_project(tmp_path_factory.mktemp("origin"))
    sh(project, "maas", "compose", *TINY)
    for line in readme_s3_lines():
        sh(project, *line.replace("s3://my-bucket/maas", f"s3://{BUCKET}/store").split())
    with open(project / ".dvc" / "config", "a") as f:  # `dvc remote modify s3 endpointurl URL`, a DVC start sooner
        f.write(f"    endpointurl = {s3.url}\n")
    assert "['remote \"s3\"']\n    url = s3://" in (project / ".dvc" / "config").read_text()
    assert ran(sh(project, "dvc", "repro", env=s3.env)) == STAGES
    a = commit(project, "A: tiny config on S3")
    sh(project, "dvc", "push", env=s3.env)
    bento = io.read_json(project / "models" / "bento" / "bento.json")
    found = SimpleNamespace(path=project, rev=a, bento=bento,
                            archive_md5=io.file_md5(project / "models" / "bento" / bento["archive"]),
                            metrics=(project / "reports" / "metrics.json").read_bytes())

    # B only up to train: its model is what differs from A's; the later stages would add only time.
    sh(project, "maas", "compose", *TINY, "trainer.epochs=1")
    assert ran(sh(project, "dvc", "repro", "train", env=s3.env)) == ["train"]
    found.weights_b = io.file_md5(project / "models" / "trained" / "weights.safetensors")
    commit(project, "B: one epoch")
    sh(project, "dvc", "push", env=s3.env)
    return found


def flip_a_byte(path: Path) -> None:
    """In place, keeping the size and times: DVC's state database (inode, size, mtime) still vouches for it."""
    stat = path.stat()
    path.chmod(0o644)  # DVC leaves cache files read-only
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(stat.st_mode)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def clone(origin, dest: Path, rev: str | None = None) -> Path:
    sh(dest.parent, "git", "clone", "-q", str(origin.path), str(dest))
    if rev:
        sh(dest, "git", "checkout", "-q", rev)
    return dest


@pytest.fixture(scope="module")
def at_a(origin, s3, tmp_path_factory) -> Path:
    """A fresh clone (at B) checked out at A, with A's data and outputs pulled from S3."""
    project = clone(origin, tmp_path_factory.mktemp("at-a") / "clone", origin.rev)
    assert not (project / "models").exists()
    sh(project, "dvc", "pull", env=s3.env)
    return project


def test_both_revisions_went_to_s3_and_none_to_the_local_remote(origin, s3):
    keys = {o["Key"] for o in s3.client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    cached = {"/".join(p.parts[-2:]) for p in (origin.path / ".dvc" / "cache" / "files" / "md5").rglob("*")
              if p.is_file()}
    assert keys == {f"store/files/md5/{c}" for c in cached}
    assert not (origin.path / ".dvc-storage").exists()


def test_a_fresh_clone_pulls_from_s3_and_serves_the_pushed_bento_without_retraining(origin, s3, at_a, tmp_path):
    assert CLEAN in sh(at_a, "dvc", "status")  # nothing to rerun: `dvc repro` would train nothing
    assert io.file_md5(at_a / "models" / "trained" / "weights.safetensors") != origin.weights_b  # A's, not B's
    assert (at_a / "reports" / "metrics.json").read_bytes() == origin.metrics
    assert io.file_md5(at_a / "models" / "bento" / origin.bento["archive"]) == origin.archive_md5

    env = {**s3.env, "BENTOML_HOME": str(tmp_path / "bentoml")}  # a store that has never seen the Bento
    port = free_port()
    proc = start([str(BIN / "maas"), "serve", "--port", str(port)], tmp_path / "serve.log", env=env, cwd=at_a)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
        meta = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=30).json()
        assert (meta["bento_tag"], meta["model_tag"]) == (origin.bento["bento_tag"], origin.bento["model_tag"])
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"images": [IMAGE]}, timeout=60)
        assert answer.status_code == 200 and answer.json()["classes"] == [0], answer.text
    finally:
        stop(proc)
    assert f"importing {origin.bento['bento_tag']}" in (tmp_path / "serve.log").read_text()
    assert not (at_a / ".maas").exists()  # no training ever started here (its checkpoints live there)


def test_the_earlier_revision_rebuilt_from_scratch_gives_the_same_metrics(origin, s3, at_a):
    # --force: DVC's run cache is not consulted, so both stages really run.
    out = sh(at_a, "dvc", "repro", "--force", "--single-item", "train", "evaluate", env=s3.env)
    assert ran(out) == ["train", "evaluate"] and "is cached" not in out, out[-3000:]
    assert (at_a / "reports" / "metrics.json").read_bytes() == origin.metrics
    # dvc.lock rewritten with A's hashes: the weights, training curves and every report are byte-identical.
    assert sh(at_a, "git", "status", "--porcelain") == ""


def test_a_tampered_cache_object_is_caught_by_its_hash_and_never_served(origin, s3, at_a, tmp_path):
    archive = at_a / "models" / "bento" / origin.bento["archive"]
    md5 = origin.archive_md5
    cached = at_a / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    flip_a_byte(cached)
    archive.unlink()
    sh(at_a, "dvc", "pull", "models/bento", env=s3.env)  # from a remote that verifies, yet
    assert io.file_md5(archive) != md5  # DVC copied the bad cached object without checking it

    out = sh(at_a, "maas", "verify", "models/bento", check=False)
    assert f"models/bento/{archive.name}: hash mismatch: dvc.lock records md5 {md5}" in out, out
    assert f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}: hash mismatch" in out, out
    out = sh(at_a, "maas", "serve", "--port", str(free_port()), env={**s3.env, "BENTOML_HOME": str(tmp_path)},
             check=False, timeout=120)
    assert "refusing to use it" in out and f"models/bento/{archive.name}: hash mismatch" in out, out
    assert not (tmp_path / "bentos").exists()  # nothing was imported into the BentoML store

    # The repair the messages give: delete the bad copies, pull again.
    cached.unlink()
    archive.unlink()
    sh(at_a, "dvc", "pull", "models/bento", env=s3.env)
    assert io.file_md5(archive) == md5


def test_a_tampered_remote_object_is_caught_by_its_hash_and_never_used(origin, s3, tmp_path):
    md5 = origin.archive_md5
    key = f"store/files/md5/{md5[:2]}/{md5[2:]}"
    good = s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(bad))
    try:
        project = clone(origin, tmp_path / "clone", origin.rev)
        archive = project / "models" / "bento" / origin.bento["archive"]
        # verify = true (the README's second line): the download is re-hashed, discarded, the pull fails.
        out = sh(project, "dvc", "pull", "models/bento", env=s3.env, check=False)
        assert "failed to pull" in out and not archive.exists(), out
        assert not (project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).exists()
        out = sh(project, "maas", "verify", "-c", "models/bento", env=s3.env, check=False)
        assert f"s3://{BUCKET}/{key}: hash mismatch: the remote object filed as md5 {md5}" in out, out
        # (With verify off, DVC would put the bad object in the cache and the workspace and call it up to
        # date; `maas serve` refuses it then as in the cache test above: docs/remotes.md.)
    finally:
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=good)


def test_the_local_remote_verifies_what_it_downloads():
    """The default remote re-hashes downloads as the README's S3 lines make S3 do."""
    from dvc.config import Config

    config = Config(dvc_dir=str(ROOT / ".dvc"))
    assert config["core"]["remote"] == "local" and config["remote"]["local"]["verify"] is True
