"""Reading the registry's answers: error bodies and instance JSON."""

from __future__ import annotations

from typing import Any

import httpx

from jarvis_dns.errors import NotFound, RegistryUnavailable, RequestError, ValidationError

_TEXT_LIMIT = 200


def reason(response: httpx.Response) -> str:
    """A one-line reason from an error answer: 'field: message (code)' when it has one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        field = f"{error['field']}: " if error.get("field") else ""
        return f"{field}{error.get('message', '')} ({error.get('code', response.status_code)})"
    if isinstance(error, str):
        return error
    return f"HTTP {response.status_code}: {response.text[:_TEXT_LIMIT]}"


def request_error(response: httpx.Response) -> RequestError:
    """The client-side exception for a 4xx answer."""
    if response.status_code == 404:
        return NotFound(reason(response))
    if response.status_code == 400:
        return ValidationError(reason(response))
    error = RequestError(reason(response), code=str(response.status_code))
    error.status = response.status_code
    return error


def json_body(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; a server that does not speak JSON counts as unavailable."""
    try:
        return response.json()
    except ValueError as exc:
        url = response.request.url
        raise RegistryUnavailable(f"{url} answered something that is not JSON") from exc
