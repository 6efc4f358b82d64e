"""HTTPS with a throwaway CA made in the test (the openssl binary): the server serves
--tls-cert/--tls-key, the client verifies it with verify=, mutual TLS with
--tls-client-ca and the client's cert=, and a bad TLS setting is a one-line error."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from conftest import app_config, running_app
from pki import Pki, needs_openssl

from jarvis_dns.app import App
from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.config import Config
from jarvis_dns.errors import ConfigError, RegistryUnavailable

pytestmark = needs_openssl


def config(tmp_path: Path, pki: Pki, **kw: object) -> Config:
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    return app_config(tmp_path, **{**tls, **kw})


async def test_https_with_the_client_verifying_the_ca(tmp_path: Path, pki: Pki) -> None:
    async with running_app(config(tmp_path, pki)) as app:
        assert app.http_url.startswith("https://")
        async with DNSClient(app.http_url, verify=str(pki.ca)) as client:
            assert await client.register_service(ServiceConfig("svc", 1, port=80, host="10.0.0.1"))
            assert [i["instance_id"] for i in await client.discover_all("svc")] == [1]
        async with httpx.AsyncClient() as plain:  # the system's CAs do not know ours
            with pytest.raises(httpx.ConnectError):
                await plain.get(app.http_url + "/v1/health")
        http_url = app.http_url.replace("https://", "http://")
        async with httpx.AsyncClient() as cleartext:  # plain HTTP on the TLS port: no answer
            with pytest.raises(httpx.HTTPError):
                await cleartext.get(http_url + "/v1/health", timeout=3)


async def test_mutual_tls_needs_a_client_certificate(tmp_path: Path, pki: Pki) -> None:
    cfg = config(tmp_path, pki, tls_client_ca=str(pki.ca))
    async with running_app(cfg) as app:
        cert = (str(pki.client_cert), str(pki.client_key))
        async with DNSClient(app.http_url, verify=str(pki.ca), cert=cert) as client:
            assert await client.register_service(ServiceConfig("svc", 1, port=80, host="10.0.0.1"))
        without = DNSClient(app.http_url, verify=str(pki.ca), register_attempts=1)
        try:
            with pytest.raises(RegistryUnavailable):
                await without.register_service(ServiceConfig("svc", 2, port=80, host="10.0.0.1"))
        finally:
            await without.close()


async def test_bad_tls_settings_are_config_errors(tmp_path: Path, pki: Pki) -> None:
    for kw in (
        {"tls_key": ""},
        {"tls_cert": str(tmp_path / "missing.pem")},
        {"tls_cert": "", "tls_key": "", "tls_client_ca": str(pki.ca)},
    ):
        app = App(config(tmp_path, pki, **kw))
        with pytest.raises(ConfigError, match=r"(?i)tls"):
            await app.start()
        await app.close()


def test_the_server_context_asks_for_tls_1_2_or_later(tmp_path: Path, pki: Pki) -> None:
    from jarvis_dns.security import server_tls

    context = server_tls(config(tmp_path, pki))
    assert context is not None and context.minimum_version >= ssl.TLSVersion.TLSv1_2
