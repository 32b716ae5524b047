"""HTTPS for `maas serve`: a certificate and its key, given to the server, never to the Bento.

    maas serve --ssl-certfile /etc/maas/tls/cert.pem --ssl-keyfile /etc/maas/tls/key.pem
    MAAS_SSL_CERTFILE=... MAAS_SSL_KEYFILE=... maas serve            # the same, from the environment

Both are passed on to `bentoml serve --ssl-certfile/--ssl-keyfile` (uvicorn's TLS), after checking
here that the two files are PEM, that the key is the certificate's and that it is not
password-protected: a mistake is named before the server starts, not in a worker's traceback.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Mapping

from maas.errors import ConfigError

CERT_ENV, KEY_ENV = "MAAS_SSL_CERTFILE", "MAAS_SSL_KEYFILE"


def _no_password() -> str:
    raise ConfigError("the TLS key file is password-protected; `maas serve` takes an unencrypted PEM key "
                      "(readable by the server's user only)")


def serve_flags(certfile: str | None, keyfile: str | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """`bentoml serve`'s TLS flags for the flags given to `maas serve`, or else the environment's; [] for none."""
    cert = certfile or environ.get(CERT_ENV) or None
    key = keyfile or environ.get(KEY_ENV) or None
    if cert is None and key is None:
        return []
    if cert is None or key is None:
        given = "key" if cert is None else "certificate"
        raise ConfigError(f"HTTPS needs both a certificate and its key: --ssl-certfile ({CERT_ENV}) "
                          f"and --ssl-keyfile ({KEY_ENV}); only the {given} is given")
    cert, key = str(Path(cert).resolve()), str(Path(key).resolve())
    for what, path in (("certificate", cert), ("key", key)):
        if not os.access(path, os.R_OK):
            raise ConfigError(f"the TLS {what} file {path} is missing or unreadable")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as e:
        raise ConfigError(f"the TLS certificate {cert} and key {key} don't load as a PEM certificate and its "
                          f"private key ({e.reason or e})") from None
    return ["--ssl-certfile", cert, "--ssl-keyfile", key]
