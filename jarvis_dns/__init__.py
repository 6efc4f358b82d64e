"""jarvis-dns: a service registry that is a real DNS server.

The public surface is the Python client; the server is run with `jarvis-dns serve`.
"""

from jarvis_dns.client import DNSClient, ServiceConfig

__version__ = "0.1.0"
__all__ = ["DNSClient", "ServiceConfig", "__version__"]
