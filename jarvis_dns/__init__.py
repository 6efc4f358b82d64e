"""jarvis-dns: a service registry that is a real DNS server."""

__version__ = "0.1.0"
