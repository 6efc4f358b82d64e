"""The HTTP side-port: v1 API, legacy JARVIS routes, blocking queries."""
