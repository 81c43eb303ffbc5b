"""Every raw line `convmgr mcp` writes, checked strictly against the official MCP types (mcp_types).

The SDK's own checks are lenient (unknown keys are ignored, null is taken for
an absent optional field, "1" for 1): these are not. A line is one JSON value
without NaN or Infinity; the envelope is JSON-RPC 2.0; a result fits the
2025-11-25 surface model of the method it answers (the surface the SDK applies
to every handshake revision), a notification or request its own model; and,
recursively, there is no key the model does not name, no null for an optional
field (it is left out), and no value that only fits after coercion.
"""

import json
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from mcp_types import jsonrpc, methods
from pydantic import BaseModel, TypeAdapter, ValidationError

SURFACE_VERSION = "2025-11-25"

_ENVELOPE_KEYS = {
    "request": {"jsonrpc", "id", "method", "params"},
    "notification": {"jsonrpc", "method", "params"},
    "result": {"jsonrpc", "id", "result"},
    "error": {"jsonrpc", "id", "error"},
}


class WireViolation(AssertionError):
    """convmgr wrote something the official types do not allow."""


def _no_constant(name: str) -> Any:
    raise WireViolation(f"{name} is not JSON")


def parse_line(text: str) -> Any:
    """One written line as JSON (NaN and Infinity refused)."""
    if "\n" in text:
        raise WireViolation(f"a message spans lines: {text[:200]!r}")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise WireViolation(f"not JSON: {exc}: {text[:200]!r}") from None


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def strict(annotation: Any, value: Any, where: str) -> None:
    """Check `value` against a type of mcp_types, refusing what the lenient models let through."""
    origin = get_origin(annotation)
    if origin is Annotated:
        strict(get_args(annotation)[0], value, where)
        return
    if annotation is Any:
        return
    if origin in (Union, types.UnionType):
        problems = []
        for member in get_args(annotation):
            try:
                strict(member, value, where)
                return
            except WireViolation as exc:
                problems.append(str(exc))
        raise WireViolation(f"{where}: fits no member of {annotation}: {problems}")
    if annotation is type(None):
        if value is not None:
            raise WireViolation(f"{where}: must be null")
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        _strict_model(annotation, value, where)
        return
    if origin is list:
        if not isinstance(value, list):
            raise WireViolation(f"{where}: must be an array")
        (item,) = get_args(annotation)
        for index, element in enumerate(value):
            strict(item, element, f"{where}[{index}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise WireViolation(f"{where}: must be an object")
        _, item = get_args(annotation)
        for key, element in value.items():
            strict(item, element, f"{where}.{key}")
        return
    if origin is Literal or annotation in (str, int, float, bool):
        if annotation is int and isinstance(value, bool):
            raise WireViolation(f"{where}: a boolean is not an integer")
        try:
            _adapter(annotation).validate_python(value, strict=True)
        except ValidationError as exc:
            raise WireViolation(f"{where}: {exc.errors()[0]['msg']}: {value!r}") from None
        return
    # Anything else (a plain dict, a constrained type): the model's own validation.
    try:
        _adapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        raise WireViolation(f"{where}: {exc}") from None


def _strict_model(model: type[BaseModel], value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise WireViolation(f"{where}: {model.__name__} must be an object, not {value!r}")
    try:
        model.model_validate(value, strict=True, by_name=False)
    except ValidationError as exc:
        raise WireViolation(f"{where}: does not fit {model.__name__}: {exc}") from None
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for key, item in value.items():
        info = fields.get(key)
        if info is None:
            if model.model_config.get("extra") != "allow":
                raise WireViolation(f"{where}: {model.__name__} has no key {key!r}")
            continue
        if item is None and not info.is_required():
            raise WireViolation(f"{where}.{key}: null for an optional field (leave it out)")
        strict(info.annotation, item, f"{where}.{key}")


def check_message(msg: Any, answering: str | None, version: str = SURFACE_VERSION) -> str:
    """Check one server message; its kind. `answering`: the method of the request it answers."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise WireViolation(f"not a JSON-RPC 2.0 object: {msg!r}")
    if "method" in msg:
        kind = "request" if "id" in msg else "notification"
    else:
        kind = "error" if "error" in msg else "result"
    if set(msg) - _ENVELOPE_KEYS[kind]:
        raise WireViolation(f"{kind} with keys {sorted(msg)}")
    try:
        jsonrpc.jsonrpc_message_adapter.validate_python(msg, strict=True)
    except ValidationError as exc:
        raise WireViolation(f"not a JSON-RPC message: {exc}") from None
    if kind == "notification":
        strict(methods.SERVER_NOTIFICATIONS[(msg["method"], version)], msg, msg["method"])
    elif kind == "request":
        if not isinstance(msg["id"], str):
            raise WireViolation(f"server request ids are strings: {msg!r}")
        strict(methods.SERVER_REQUESTS[(msg["method"], version)], msg, msg["method"])
    elif kind == "result":
        if answering is None:
            raise WireViolation(f"a result for no request of the client: {msg!r}")
        strict(methods.SERVER_RESULTS[(answering, version)], msg["result"], f"{answering} result")
    else:
        _strict_model(jsonrpc.JSONRPCError, msg, "error")
    return kind


@dataclass
class WireLog:
    """Both directions of a session as raw lines, in order: ("<" from the client, ">" to it)."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, direction: str, text: str) -> None:
        """One line as it went over the pipe."""
        self.lines.append((direction, text))

    def server_messages(self) -> list[dict[str, Any]]:
        """Every message convmgr wrote, checked; the parsed messages."""
        asked: dict[Any, str] = {}
        written = []
        for direction, text in self.lines:
            msg = parse_line(text)
            if direction == "<":
                if isinstance(msg, dict) and "method" in msg and "id" in msg:
                    asked[msg["id"]] = msg["method"]
                continue
            answering = asked.pop(msg.get("id"), None) if "method" not in msg else None
            check_message(msg, answering)
            written.append(msg)
        return written

    def check(self) -> list[dict[str, Any]]:
        """The same, as a test's last step: at least one message was written."""
        written = self.server_messages()
        assert written, "convmgr wrote nothing"
        return written

    def answers(self, request_id: Any) -> list[dict[str, Any]]:
        """What convmgr wrote in answer to the client's request of that id."""
        return [
            m
            for m in map(parse_line, (t for d, t in self.lines if d == ">"))
            if "method" not in m and m.get("id") == request_id
        ]

    def client_requests(self, method: str) -> list[dict[str, Any]]:
        """The client's requests of a method, in order."""
        sent = [parse_line(t) for d, t in self.lines if d == "<"]
        return [m for m in sent if m.get("method") == method and "id" in m]
