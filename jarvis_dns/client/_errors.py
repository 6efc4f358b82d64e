"""Reading the registry's answers: error bodies and instance JSON."""

from __future__ import annotations

from typing import Any

import httpx

from jarvis_dns.errors import BadResponse, NotFound, RequestError, ValidationError

_TEXT_LIMIT = 200


def reason(response: httpx.Response) -> str:
    """A one-line reason from an error answer: 'field: message (code)' when it has one."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        field = f"{error.get('field')}: " if error.get("field") else ""
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
    """The JSON of a 2xx answer; BadResponse (a RegistryUnavailable) when it is not JSON."""
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:
        url = response.request.url
        raise BadResponse(f"{url} answered something that is not JSON") from exc


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer (an instance); BadResponse for any other shape."""
    body = json_body(response)
    if not isinstance(body, dict):
        url = response.request.url
        raise BadResponse(f"{url} answered {type(body).__name__} where an object belongs")
    return body
