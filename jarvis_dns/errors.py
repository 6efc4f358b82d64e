"""The exceptions of jarvis-dns.

JarvisError
├── RequestError              bad input; carries an HTTP status, a code and a field
│   ├── ValidationError       400: a field is missing or out of its rule
│   ├── Unauthorized          401: no token where one is needed, or an unknown token
│   ├── Forbidden             403: the token's policy does not allow this
│   ├── NotFound              404: no such service or instance
│   ├── RequestTimeout        408: the body did not arrive within --http-read-timeout
│   ├── Conflict              409: the request contradicts the stored state
│   ├── PayloadTooLarge       413: body over the limit
│   ├── UnsupportedMediaType  415: body is not JSON
│   ├── Unprocessable         422: well-formed but cannot be applied
│   ├── ServiceUnavailable    503: too busy for this request now (blocking-query cap)
│   └── InsufficientStorage   507: --max-instances or --max-instances-per-service reached
├── StoreError                the persistence layer failed (disk full, I/O error)
│   └── StaleRead             a shared store refused a batch planned against an old view
├── ConfigError               a setting is unusable (port taken, dir unwritable)
└── ZoneError                 a zone file does not parse (file and line)
RegistryError                 client side: the registry could not be used
└── RegistryUnavailable(RegistryError, ConnectionError)
    │                         no registry server answered (within the request's deadline)
    └── BadResponse           a server answered what the API never says: not JSON, the
        │                     wrong shape ([1,2,3] for an instance), a bad index
        └── ResponseTooLarge  an answer over the client's cap (1 MiB)
"""

from __future__ import annotations

import os


class JarvisError(Exception):
    """Base of every jarvis-dns error."""


class RequestError(JarvisError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class ValidationError(RequestError):
    status = 400
    code = "invalid"


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    status = 403
    code = "forbidden"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class RequestTimeout(RequestError):
    status = 408
    code = "request_timeout"


class Conflict(RequestError):
    status = 409
    code = "conflict"


class PayloadTooLarge(RequestError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(RequestError):
    status = 422
    code = "unprocessable"


class ServiceUnavailable(RequestError):
    status = 503
    code = "unavailable"


class InsufficientStorage(RequestError):
    """A quota, not a failure: the registry holds as many instances as it may."""

    status = 507
    code = "too_many_instances"


class StoreError(JarvisError):
    """The store could not read or write."""


class StaleRead(StoreError):
    """Another node changed a key this batch's plan read (an etcd txn compare failed).

    Not an answer to anyone: the writer waits for its view to reach `revision`, plans
    the command again and retries."""

    def __init__(self, message: str, revision: int):
        super().__init__(message)
        self.revision = revision


class ConfigError(JarvisError):
    """A setting cannot be used; the message is one line for the operator."""

    @classmethod
    def listening(cls, what: str, address: str, exc: OSError) -> ConfigError:
        """A socket that could not listen: what, the address and port, and the OS's
        reason (uvloop keeps the errno only in the exception's cause)."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, OSError) and cause.errno:
                return cls(f"cannot listen for {what} on {address}: {os.strerror(cause.errno)}")
            cause = cause.__cause__
        return cls(f"cannot listen for {what} on {address}: {exc}")


class ZoneError(JarvisError):
    """A zone file is broken; the message names the file and line."""

    def __init__(self, message: str, path: str = "", line: int = 0):
        super().__init__(f"{path}:{line}: {message}" if path else message)
        self.path = path
        self.line = line


class RegistryError(JarvisError):
    """Client side: the registry could not be used."""


class RegistryUnavailable(RegistryError, ConnectionError):
    """No registry server answered (client side)."""


class BadResponse(RegistryUnavailable):
    """A server answered something the API never answers; as good as no answer."""


class ResponseTooLarge(BadResponse):
    """A server's answer was over the client's size cap."""
