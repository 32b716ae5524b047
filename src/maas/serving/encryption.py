"""The packaged model encrypted at rest (serve.encrypt=true): AES-256-GCM from `cryptography`.

    maas model-key new --file /etc/maas/model.key                  # 256 random bits, readable by you only
    export MAAS_MODEL_KEY_FILE=/etc/maas/model.key                 # or MAAS_MODEL_KEY=<the key itself>
    maas compose serve.encrypt=true && dvc repro                   # the package stage encrypts the model
    maas serve                                                     # the service decrypts it in memory

What is encrypted: every file the package stage puts in the BentoML model (model.yaml, the weights,
preprocessor.json, the training profile, serve.json, model_card.json). So the BentoML store, the
exported archive (paths.bento/*.bento, which DVC versions) and an image built from the Bento hold
ciphertext only. Each stored file is MAGIC, a 96-bit nonce derived from its name and content, then AES-GCM's
ciphertext and tag, with the file's name as associated data: a changed byte, a file renamed or one
swapped for another fails to decrypt.

The Bento records that its model is encrypted and the key's fingerprint (build argument ENCRYPTION_ARG),
never the key: it comes from the environment of the package stage and of the server. The manifest
(integrity.py) records the plain files and is checked after decryption, so a file swapped for another
model's (encrypted with the same key, under the same name) is still refused. The model's tag covers the
key's fingerprint: the same model encrypted with another key is another stored model.

The service decrypts each file into an anonymous in-memory file (memfd, Linux), reached through a
temporary folder of links to them, and closes them once the model is loaded: nothing plain is written
to a disk, and nothing plain outlives the process. Without the key, or with another one, the server
exits at start, naming the variable or the fingerprints.

Not covered: the pipeline's own outputs (models/trained, models/compressed, data/processed) stay plain
on the machine that trains, and in its DVC cache and remote; protect those where they are kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from maas.errors import ArtifactError, ConfigError

logger = logging.getLogger("maas.serving")
KEY_ENV, KEY_FILE_ENV = "MAAS_MODEL_KEY", "MAAS_MODEL_KEY_FILE"
ENCRYPTION_ARG = "model_encryption"  # the build argument: {"cipher": CIPHER, "key_id": <fingerprint>}
CIPHER = "AES-256-GCM"
MAGIC = b"MAASENC1"
NONCE_BYTES = 12  # GCM's standard nonce, derived from the name and content (see encrypt)
TAG_BYTES = 16
MAX_BYTES = 2**31 - 1 - TAG_BYTES  # what `cryptography`'s one-shot AESGCM takes
HOW = f"set {KEY_ENV} to the key, or {KEY_FILE_ENV} to a file holding it (`maas model-key new --file F` makes one)"


def _aad(name: str) -> bytes:
    return b"maas.model-file/1:" + name.encode("utf-8")


@dataclass(frozen=True)
class ModelKey:
    secret: bytes = field(repr=False)  # 32 bytes
    source: str                        # where it came from, for messages: the variable (never the key)

    @classmethod
    def parse(cls, text: str, source: str) -> "ModelKey":
        value = text.strip()
        try:
            secret = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            secret = b""
        if len(secret) != 32 or not value:
            # Never echo the value: it is (or is meant to be) the key.
            raise ConfigError(f"{source} must hold a 256-bit key in base64 (43 characters, as `maas model-key new` "
                              f"prints); it holds {len(value)} characters that are not one")
        return cls(secret, source)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ModelKey | None":
        """The key in MAAS_MODEL_KEY or the file MAAS_MODEL_KEY_FILE names; None when neither is set."""
        plain, path = environ.get(KEY_ENV), environ.get(KEY_FILE_ENV)
        if plain is not None and path is not None:
            raise ConfigError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set: set one")
        if plain is not None:
            return cls.parse(plain, KEY_ENV)
        if path is None:
            return None
        if not path.strip():
            raise ConfigError(f"{KEY_FILE_ENV} is set but empty; name the key's file or unset it")
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{KEY_FILE_ENV}={path} is unreadable ({type(e).__name__}: {e})") from None
        return cls.parse(text, f"{KEY_FILE_ENV}={path}")

    @property
    def key_id(self) -> str:
        """A fingerprint that tells keys apart and says nothing about the key (HMAC-SHA256 of a fixed text)."""
        return hmac.new(self.secret, b"maas model key fingerprint", hashlib.sha256).hexdigest()[:16]

    def encrypt(self, data: bytes, name: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(data) > MAX_BYTES:
            raise ArtifactError(f"{name} is {len(data)} bytes; serve.encrypt takes files up to {MAX_BYTES} bytes")
        # A synthetic nonce (HMAC of the name and content, as SIV constructions make): the same file under
        # the same key encrypts to the same bytes, so an encrypted Bento is as reproducible as a plain one
        # (dvc.lock), and a nonce repeats only for the very same plaintext, which then shows only that.
        nonce = hmac.new(self.secret, _aad(name) + b"\0" + data, hashlib.sha256).digest()[:NONCE_BYTES]
        return MAGIC + nonce + AESGCM(self.secret).encrypt(nonce, data, _aad(name))

    def decrypt(self, blob: bytes, name: str) -> bytes:
        """The plain bytes of the stored file `name`; ArtifactError if they are not that file under this key."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
            raise ArtifactError(f"{name} is not a file maas encrypted (tampered file)")
        nonce, body = blob[len(MAGIC):len(MAGIC) + NONCE_BYTES], blob[len(MAGIC) + NONCE_BYTES:]
        try:
            return AESGCM(self.secret).decrypt(nonce, body, _aad(name))
        except InvalidTag:
            raise ArtifactError(f"{name} does not decrypt with {self.source} (wrong key or tampered file)") from None


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def write_new_key(path: Path) -> ModelKey:
    """Write a new key to `path`, which must not exist, readable by its owner only; return it."""
    key = new_key()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, never replaces a key that is there: that would lose a model
        except FileExistsError:
            raise ConfigError(f"{path} exists: a model encrypted with that key needs it; choose another file") from None
    finally:
        os.unlink(tmp)
    return ModelKey.parse(key, str(path))


def enabled(cfg) -> bool:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "serve.encrypt", default=False)
    if not isinstance(value, bool):
        raise ConfigError(f"serve.encrypt={value!r} must be true or false")
    return value


def package_key(cfg, environ: Mapping[str, str] = os.environ) -> ModelKey | None:
    """The key the package stage encrypts with; None when serve.encrypt is false."""
    if not enabled(cfg):
        return None
    key = ModelKey.from_env(environ)
    if key is None:
        raise ConfigError(f"serve.encrypt=true needs the model key: {HOW}")
    return key


def store(src: Path, dst: Path, key: ModelKey | None) -> None:
    """Put the model file `src` at `dst` in the BentoML model: encrypted when there is a key."""
    if key is None:
        shutil.copy2(src, dst)
    else:
        dst.write_bytes(key.encrypt(src.read_bytes(), src.name))


def build_args(key: ModelKey | None) -> dict[str, Any]:
    return {} if key is None else {ENCRYPTION_ARG: {"cipher": CIPHER, "key_id": key.key_id}}


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


@contextmanager
def readable(directory: str | Path, info: Mapping[str, Any] | None, key: ModelKey | None = None,
             environ: Mapping[str, str] = os.environ) -> Iterator[Path]:
    """A folder holding the model's files as the package stage wrote them: `directory` itself when `info`
    (the Bento's ENCRYPTION_ARG) is empty; otherwise links to in-memory copies decrypted with `key` (by
    default the environment's), gone when the block ends."""
    from maas.serving import integrity

    directory = Path(directory)
    if not info:
        if key is None and (KEY_ENV in environ or KEY_FILE_ENV in environ):
            logger.warning("%s is set, but this Bento's model is not encrypted (packaged with serve.encrypt=false)",
                           KEY_ENV if KEY_ENV in environ else KEY_FILE_ENV)
        yield directory
        return
    if not (isinstance(info, Mapping) and info.get("cipher") == CIPHER and isinstance(info.get("key_id"), str)):
        raise ArtifactError(f"the Bento's {ENCRYPTION_ARG} is {info!r}; this maas reads {CIPHER} models only: "
                            "rebuild it with `maas stage package`")
    key = key or ModelKey.from_env(environ)
    if key is None:
        raise ConfigError(f"this Bento's model is encrypted ({CIPHER}, key fingerprint {info['key_id']}): {HOW}")
    if key.key_id != info["key_id"]:
        raise ArtifactError(f"wrong key or tampered file: {key.source} is the key of fingerprint {key.key_id}, but "
                            f"this Bento's model was encrypted with the key of fingerprint {info['key_id']}")
    if not hasattr(os, "memfd_create"):
        raise ArtifactError("an encrypted model is decrypted into memory files (memfd), which only Linux has: "
                            "serve it on Linux (or in its container image)")
    with tempfile.TemporaryDirectory(prefix="maas-model-") as view, ExitStack() as fds:
        problems = []
        for name, path in integrity.present(directory).items():
            if "/" in name or path.is_symlink() or not path.is_file():
                problems.append(f"{name} is there but was not packaged (tampered file)")
                continue
            try:
                plain = key.decrypt(path.read_bytes(), name)
            except ArtifactError as e:
                problems.append(str(e))
                continue
            fd = _memfd(name, plain)
            fds.callback(os.close, fd)
            # A link through /proc: the loaders open a path, and this one leads to memory (and only for
            # this process: another's /proc/self is its own).
            os.symlink(f"/proc/self/fd/{fd}", Path(view) / name)
        if problems:
            raise ArtifactError(f"the encrypted model in {directory} can't be read: " + "; ".join(problems))
        yield Path(view)
