"""The original JARVIS import path: `from dns_client import DNSClient, ServiceConfig`."""

from jarvis_dns.client import DNSClient, ServiceConfig

__all__ = ["DNSClient", "ServiceConfig"]
