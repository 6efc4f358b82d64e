"""Persistence behind one Protocol; app.py picks the backend from the store URL."""

from jarvis_dns.store.base import Store

__all__ = ["Store"]
