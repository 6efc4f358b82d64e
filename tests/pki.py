"""A throwaway certificate authority made in the test (the openssl binary): a CA, a
server certificate for 127.0.0.1 and localhost, and a client certificate. Shared by
the HTTPS and the DNS over TLS tests through conftest's `pki` fixture."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _issue(d: Path, name: str, ca: Path, ca_key: Path, ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = (d / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
    extfile.write_text(ext + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "1", "-extfile", extfile)  # fmt: skip
    return cert, key


def make_pki(d: Path) -> Pki:
    """The CA and certificates, written into directory d (the `pki` fixture's)."""
    ca, ca_key = d / "ca.pem", d / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "1", "-subj", "/CN=jarvis-dns test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    server = _issue(d, "server", ca, ca_key, names + "\nextendedKeyUsage=serverAuth")
    client = _issue(d, "client", ca, ca_key, "extendedKeyUsage=clientAuth")
    return Pki(ca, *server, *client)
