"""The Python client of jarvis-dns: register, heartbeat, report status, discover.

    from jarvis_dns.client import DNSClient, ServiceConfig

Imports only jarvis_dns.models, jarvis_dns.errors, jarvis_dns.matching and httpx,
never a server module, so services can use it without the server's dependencies.
"""

from jarvis_dns.client._client import DNSClient
from jarvis_dns.client._config import ServiceConfig

__all__ = ["DNSClient", "ServiceConfig"]
