"""Classifying incoming JSON values: requests, notifications, responses, or invalid.

Every message is checked here before anything acts on it; the connection
routes what is valid (and endpoint.py's Endpoint sees only valid responses).
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from convmgr.logs import content_enabled, fields

# The messages read and written, at debug: what they are and their size (whole
# only with --log-content).
wire_log = logging.getLogger("convmgr.jsonrpc.wire")

RequestId = int | str | None

_NO_ID = object()


@dataclass(slots=True, frozen=True)
class Invalid:
    """Not a valid request, notification or response: answer -32600 (unless `answer` is off).

    A message with a string method and no id is a notification whatever else is
    wrong with it, and a notification is never answered (JSON-RPC 2.0 section 4.1).
    """

    id: RequestId
    reason: str
    answer: bool = True


@dataclass(slots=True, frozen=True)
class Valid:
    """A well-formed message; kind is "request", "notification" or "response"."""

    kind: str
    message: dict[str, Any]


def valid_id(value: Any) -> bool:
    """Whether a value may be a JSON-RPC request id."""
    return _valid_id(value)


def _valid_id(value: Any) -> bool:
    # bool is an int in Python but not a JSON-RPC id; fractional numbers are not allowed.
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def classify(value: Any) -> Valid | Invalid:
    """Check one JSON value against JSON-RPC 2.0 (with "jsonrpc" optional)."""
    if not isinstance(value, dict):
        return Invalid(None, "a message must be a JSON object")
    raw_id = value.get("id", _NO_ID)
    has_id = raw_id is not _NO_ID
    # A string method and no id: a notification, never answered even when malformed.
    answer = has_id or not isinstance(value.get("method"), str)
    if has_id and not _valid_id(raw_id):
        return Invalid(None, "id must be a string, an integer or null")
    msg_id: RequestId = raw_id if has_id else None
    version = value.get("jsonrpc", "2.0")
    if version != "2.0":
        return Invalid(msg_id, 'jsonrpc must be "2.0"', answer)
    if "method" in value:
        if not isinstance(value["method"], str):
            return Invalid(msg_id, "method must be a string")
        if "params" in value and value["params"] is None:
            # LSP-family clients send "params": null for "no params".
            del value["params"]
        params = value.get("params")
        if "params" in value and not isinstance(params, dict | list):
            return Invalid(msg_id, "params must be an object or an array", answer)
        if "result" in value or "error" in value:
            return Invalid(msg_id, "a request cannot carry result or error", answer)
        value["jsonrpc"] = "2.0"
        return Valid("request" if has_id else "notification", value)
    if has_id and (("result" in value) != ("error" in value)):
        error = value.get("error")
        if "error" in value and not (
            isinstance(error, dict) and isinstance(error.get("code"), int)
        ):
            return Invalid(msg_id, "error must be an object with an integer code")
        value["jsonrpc"] = "2.0"
        return Valid("response", value)
    return Invalid(msg_id, "not a request, notification or response")


Path = tuple[str | int, ...]


def non_finite_path(value: Any, path: Path = ()) -> Path | None:
    """Where a JSON value holds NaN or an infinity (the parser lets them in), or None."""
    kind = type(value)
    if kind is float:
        # inf - inf and nan - nan are nan, which is unequal to everything.
        return path if value - value != 0.0 else None
    items: Iterable[tuple[str | int, Any]]
    if kind is dict:
        items = value.items()
    elif kind is list:
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if type(item) in _CONTAINERS:
            found = non_finite_path(item, (*path, key))
            if found is not None:
                return found
    return None


_CONTAINERS = (float, dict, list)


def describe(value: Any) -> str:
    """A message as the debug log names it: its kind, method and id, never its params."""
    if isinstance(value, list):
        return f"batch of {len(value)}"
    if not isinstance(value, dict):
        return "not an object"
    method = value.get("method")
    ident = f" id={value['id']!r:.80}" if "id" in value else ""
    if isinstance(method, str):
        kind = "request" if "id" in value else "notification"
        return f"{kind} {method:.100}{ident}"
    if isinstance(value.get("error"), dict):
        return f"error response{ident} code={value['error'].get('code')!r:.20}"
    return f"response{ident}"


def trace(direction: str, value: Any, size: int) -> None:
    """One message read (<-) or written (->) in the debug log."""
    wire_log.debug(
        "%s %s (%d bytes)",
        direction,
        describe(value),
        size,
        extra=fields(message=value) if content_enabled() else None,
    )
