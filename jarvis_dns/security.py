"""Start-up side of security: protected mode, the bootstrap token, the token store,
TLS contexts. (Per-request checks are in acl.py and http/common.py.)"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from jarvis_dns import acl
from jarvis_dns.config import Config, split_hostport
from jarvis_dns.errors import ConfigError, StoreError
from jarvis_dns.store.base import Store
from jarvis_dns.store.etcd import EtcdStore
from jarvis_dns.store.sqlite import SqliteStore
from jarvis_dns.store.tokens import EtcdTokens, MemoryTokens, SqliteTokens, TokenStore

log = logging.getLogger("jarvis_dns.security")
BOOTSTRAP_FILE = "acl-bootstrap-token"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name may resolve to anything


def check_protected_mode(config: Config) -> None:
    """Refuse an HTTP bind beyond loopback that nobody guards."""
    host, _ = split_hostport(config.http, 9000)
    if not (config.acl or config.insecure or is_loopback(host)):
        raise ConfigError(
            f"HTTP address {config.http} is reachable beyond this host and anyone could "
            "change the registry: add --acl (tokens), or --insecure to serve it open"
        )


def bootstrap_secret(config: Config) -> str:
    """--acl-bootstrap-token, else <data-dir>/acl-bootstrap-token, made (0600) and
    logged the first time."""
    if config.acl_bootstrap_token:
        return config.acl_bootstrap_token
    path = Path(config.data_dir) / BOOTSTRAP_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    secret = acl.new_secret()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    log.warning("ACL bootstrap (management) token created in %s: %s", path, secret)
    return secret


def open_tokens(store: Store) -> TokenStore:
    """Tokens live where the registry does: the SQLite file, or etcd for a cluster."""
    if isinstance(store, SqliteStore):
        return SqliteTokens(store.path)
    if isinstance(store, EtcdStore):
        return EtcdTokens(store.client, store.keys.root.rstrip("/") + ".acl/tokens/")
    return MemoryTokens()


async def follow_tokens(rules: acl.Acl, tokens: TokenStore, every_s: float) -> None:
    """Keep `rules` in step with tokens other nodes make and revoke (a shared store)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            rules.replace(await tokens.load())
        except StoreError as exc:  # etcd out of reach: keep the tokens known so far
            log.warning("could not read ACL tokens: %s", exc)


def server_tls(config: Config) -> ssl.SSLContext | None:
    """HTTPS's context, asking for client certificates under --tls-client-ca."""
    if not (config.tls_cert or config.tls_key):
        if config.tls_client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    return _tls(config, config.tls_client_ca)


def dot_tls(config: Config) -> ssl.SSLContext | None:
    """DNS over TLS's context (--dot): the same certificate as HTTPS; no client
    certificates (RFC 7858 clients do not send one); ALPN "dot" (RFC 7858, 8310)."""
    if not config.dot:
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("--dot needs --tls-cert and --tls-key: the certificate it serves")
    context = _tls(config, "")
    context.set_alpn_protocols(["dot"])
    return context


def _tls(config: Config, client_ca: str) -> ssl.SSLContext:
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("give both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: {exc}") from None
    return context
