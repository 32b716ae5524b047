"""API keys: the keys file (hashes only), the keys in the environment, and the set the server checks.

    maas api-key new --file keys.txt --name alice    # prints a new key once, appends its hash
    maas api-key new --file keys.txt --name ops --role admin
    MAAS_API_KEYS_FILE=$PWD/keys.txt maas serve      # now /predict needs `Authorization: Bearer <key>`
    maas api-key revoke --file keys.txt alice        # the running server refuses it from the next request

The file holds one key per line as the sha256 hex of the key, then optionally its role, then
optionally `# name`: `<sha256>  admin  # ops`. A line without a role gives the predict role (the
files written before roles existed keep working, and none of their keys gains a right). Blank lines
and lines starting with `#` are ignored. MAAS_API_KEYS holds plain keys, comma-separated, each
optionally prefixed by its role and a colon (`admin:<key>`; a key has no colon): for a secret store
that injects one variable (the environment is no more readable than the key). With neither variable
set, nothing needs a key.

Roles: `predict` may call the prediction routes; `admin` may call those and every other keyed route:
/metadata, which shows the model's lineage and config, and any route added later (auth.py decides which
role a route needs).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from maas.errors import ConfigError

logger = logging.getLogger("maas.serving")
FILE_ENV = "MAAS_API_KEYS_FILE"
PLAIN_ENV = "MAAS_API_KEYS"
# An env key is typed by a person, not made by `maas api-key new` (43 characters): refuse the
# short ones a guesser could find, and characters an Authorization header can't carry.
PLAIN_KEY = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
PREDICT, ADMIN = "predict", "admin"
ROLES = (PREDICT, ADMIN)  # each role may do what those before it may
DEFAULT_ROLE = PREDICT    # a line or an env key without a role: the least one
_LINE = re.compile(r"([0-9a-fA-F]{64})(?:\s+([A-Za-z]\w*))?\s*(?:#\s*(.*?))?")
FORMAT = (f"each line must be a key's sha256 (64 hex characters), optionally followed by a role ({' or '.join(ROLES)}) "
          "and '# name'")


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def hash_key(key: str) -> str:
    # A fast hash is enough: every key is a random token of >= 16 characters (`new` makes 256 bits),
    # so no dictionary or brute force can invert its sha256. Slow password hashes (bcrypt, argon2)
    # exist for guessable passwords, and would cost every request milliseconds of CPU.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    digest: str       # lower-case sha256 hex of the key
    name: str | None  # the line's comment
    line: int         # 1-based
    role: str = DEFAULT_ROLE


def parse(text: str, where: str) -> list[Entry]:
    """The entries of a keys file's text; ConfigError naming `where` and the line for anything else."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            # Never echo the line: a key pasted in place of its hash would land in the log.
            raise ConfigError(f"{where}: line {number} is not a key hash; {FORMAT} "
                              "(`maas api-key hash` prints a key's hash)")
        if match[2] is not None and match[2] not in ROLES:
            # Not echoed either: a key pasted after its hash would look like a role.
            raise ConfigError(f"{where}: line {number} names a role that is not {' or '.join(ROLES)}; {FORMAT}")
        entries.append(Entry(match[1].lower(), match[3] or None, number, match[2] or DEFAULT_ROLE))
    return entries


def read_file(path: Path) -> list[Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{FILE_ENV}={path} is unreadable ({type(e).__name__}: {e}); the server "
                          "won't run without the keys it was told to require") from None
    return parse(text, f"{FILE_ENV}={path}")


def plain_digests(value: str) -> dict[str, str]:
    """{sha256 of each key: its role} of MAAS_API_KEYS's `[role:]key,...`."""
    keys = [k.strip() for k in value.split(",")]
    if not any(keys):
        raise ConfigError(f"{PLAIN_ENV} is set but holds no keys; unset it to serve without keys")
    out: dict[str, str] = {}
    for i, item in enumerate(keys, 1):
        role, colon, key = item.rpartition(":")
        role = role.strip() if colon else DEFAULT_ROLE
        if role not in ROLES:
            raise ConfigError(f"{PLAIN_ENV}: key {i} of {len(keys)} has a role that is not {' or '.join(ROLES)} "
                              "(write role:key, or the key alone for the predict role)")
        key = key.strip()
        if not PLAIN_KEY.fullmatch(key):
            raise ConfigError(f"{PLAIN_ENV}: key {i} of {len(keys)} must be at least 16 characters of "
                              "A-Z a-z 0-9 . _ ~ + / = - (`maas api-key new` makes one)")
        out[hash_key(key)] = _higher(out.get(hash_key(key)), role)
    return out


def _higher(a: str | None, b: str) -> str:
    # A key listed twice has the higher of its roles: the operator granted it somewhere.
    return b if a is None or allows(b, a) else a


def roles_of(entries: list[Entry]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in entries:
        out[e.digest] = _higher(out.get(e.digest), e.role)
    return out


class Keys:
    """The keys the server accepts and their roles: MAAS_API_KEYS's (fixed at start) and the file's,
    re-read when the file changes, so keys are added, revoked or given another role without a restart."""

    def __init__(self, path: Path | None, plain: Mapping[str, str] | None = None) -> None:
        self.path, self.plain = path, dict(plain or {})
        self.digests: dict[str, str] = {}  # the file's: sha256 -> role
        self._seen: tuple | None = None
        if path is not None:
            self._seen = self._stat()
            self.digests = roles_of(read_file(path))  # raises: refuse to start

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Keys | None":
        """The configured keys, or None if neither variable is set (then nothing needs a key)."""
        path, plain = environ.get(FILE_ENV), environ.get(PLAIN_ENV)
        if path is None and plain is None:
            return None
        if path is not None and not path.strip():
            raise ConfigError(f"{FILE_ENV} is set but empty; name the keys file or unset it")
        return cls(Path(path).resolve() if path else None, plain_digests(plain) if plain is not None else None)

    def describe(self) -> str:
        def count(roles: Mapping[str, str]) -> str:
            return f"{len(roles)} ({sum(r == ADMIN for r in roles.values())} {ADMIN})"

        parts = [f"{count(self.digests)} from {self.path} (re-read when it changes)"] if self.path else []
        parts += [f"{count(self.plain)} from {PLAIN_ENV}"] if self.plain else []
        return f"API keys required: {', '.join(parts)}"

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        # A rename over the file (the CLI's atomic write, most editors) changes the inode; an edit in
        # place changes mtime or size.
        return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size

    def refresh(self) -> None:
        """Re-read the file if it changed since the last look (one stat per call). A file that breaks
        keeps the last good keys, with one ERROR line per change: a broken file must not open the
        server, nor lock every client out."""
        if self.path is None or (seen := self._stat()) == self._seen:
            return
        self._seen = seen  # stat before reading: a write that lands during the read is seen next time
        try:
            digests = roles_of(read_file(self.path))
        except ConfigError as e:
            logger.error("%s; keeping the %d keys read before", e, len(self.digests))
            return
        # print, as the service's startup line: BentoML's server logging shows WARNING and up only.
        print(f"maas: re-read {self.path}: {len(digests)} keys (was {len(self.digests)})", flush=True)
        self.digests = digests

    def role(self, key: str) -> str | None:
        """The role of `key`, or None if it is not a key of this server."""
        self.refresh()
        digest = hash_key(key)
        found = None
        for known, role in (*self.digests.items(), *self.plain.items()):
            if hmac.compare_digest(known, digest):  # no early exit: every check costs the same
                found = _higher(found, role)
        return found

    def accepts(self, key: str) -> bool:
        return self.role(key) is not None


def new_key(path: Path, name: str | None = None, role: str = DEFAULT_ROLE) -> tuple[str, str]:
    """Append a new random key's hash and role to `path` (created if missing) atomically; return (key, hash)."""
    from maas import io

    if role not in ROLES:
        raise ConfigError(f"--role {role!r} must be one of {', '.join(ROLES)}")
    if name is not None and not NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r} must be 1-64 characters of A-Z a-z 0-9 . _ @ - (starting with a "
                          "letter or digit), so `maas api-key revoke NAME` can find it")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    entries = parse(text, str(path))  # never append to a file the server would refuse
    if name is not None and any(e.name == name for e in entries):
        raise ConfigError(f"{path} already has a key named {name}; revoke it first or choose another name")
    key = secrets.token_urlsafe(32)  # 256 random bits
    digest = hash_key(key)
    line = f"{digest}  {role}" + (f"  # {name}" if name else "") + "\n"
    io.write_text(path, text + ("\n" if text and not text.endswith("\n") else "") + line)
    return key, digest


def revoke(path: Path, which: str) -> list[Entry]:
    """Remove the lines whose name or hash is `which` from `path` atomically; return them."""
    from maas import io

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path} is unreadable ({e})") from None
    gone = [e for e in parse(text, str(path)) if which == e.name or which.lower() == e.digest]
    if not gone:
        raise ConfigError(f"{path} has no key named or hashed {which!r}")
    lines = {e.line for e in gone}
    io.write_text(path, "".join(line for i, line in enumerate(text.splitlines(keepends=True), 1) if i not in lines))
    return gone
