"""The public surface is exactly what __all__ says, and the shim matches it."""

from __future__ import annotations

import jarvis_dns


def test_all_is_the_public_surface() -> None:
    assert sorted(jarvis_dns.__all__) == ["DNSClient", "ServiceConfig", "__version__"]
    import types

    public = {
        n
        for n, v in vars(jarvis_dns).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == {"DNSClient", "ServiceConfig"}


def test_dns_client_shim() -> None:
    import dns_client

    assert dns_client.DNSClient is jarvis_dns.DNSClient
    assert dns_client.ServiceConfig is jarvis_dns.ServiceConfig
