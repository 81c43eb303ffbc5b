"""The MCP dialect's types come from the official package, and its checks agree with it.

wire.py is generated from mcp_types and must not drift; validate.py, which
checks what clients send without pydantic, accepts nothing the official
models reject (and what they accept in the usual shapes); the tools' schemas
are JSON Schema, read by validate.py as jsonschema reads them; and the strict
checker the other MCP tests use refuses what the lenient models let through.
"""

from typing import Any

import jsonschema
import mcp_types._v2025_11_25 as surface
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp_wire_check import WireViolation, check_message
from pydantic import ValidationError

from convmgr.dialects.mcp import generate, validate, wire
from convmgr.dialects.mcp.client import APPROVAL_SCHEMA
from convmgr.dialects.mcp.tools import TOOLS


def test_wire_py_is_what_the_installed_mcp_types_generates() -> None:
    assert generate.WIRE.read_text(encoding="utf-8") == generate.render(), (
        "run `python -m convmgr.dialects.mcp.generate`"
    )


def test_wire_constants_are_the_packages() -> None:
    from mcp_types import PROTOCOL_VERSION_META_KEY, jsonrpc
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

    assert tuple(HANDSHAKE_PROTOCOL_VERSIONS) == wire.HANDSHAKE_PROTOCOL_VERSIONS
    assert wire.LATEST_HANDSHAKE_VERSION == LATEST_HANDSHAKE_VERSION
    assert wire.PROTOCOL_VERSION_META_KEY == PROTOCOL_VERSION_META_KEY
    assert wire.INVALID_PARAMS == jsonrpc.INVALID_PARAMS


def _keywords(schema: Any, found: set[str]) -> set[str]:
    if isinstance(schema, list):
        for item in schema:
            _keywords(item, found)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            elif key not in ("enum", "const", "required", "pattern", "type"):
                _keywords(value, found)
    return found


def test_validate_knows_every_keyword_the_schemas_use() -> None:
    schemas = [*wire.SCHEMAS.values(), *(tool["inputSchema"] for tool in TOOLS)]
    used = _keywords(schemas, set())
    assert used <= validate.KEYWORDS, used - validate.KEYWORDS


# --- validate.py against the official models ----------------------------------------------

VALID: dict[str, list[Any]] = {
    "InitializeRequestParams": [
        {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "a", "version": "1"},
        },
        {
            "protocolVersion": "2024-11-05",
            "capabilities": {
                "elicitation": {},
                "roots": {"listChanged": True},
                "experimental": {"x": {}},
            },
            "clientInfo": {"name": "a", "version": "1", "title": "A", "icons": [{"src": "x.png"}]},
            "_meta": {"progressToken": 3, "other": [1]},
        },
        {
            "protocolVersion": "x",
            "capabilities": {"sampling": None},
            "clientInfo": {"name": "a", "version": "1"},
        },
    ],
    "CallToolRequestParams": [
        {"name": "t"},
        {"name": "t", "arguments": {"a": [1, None]}, "_meta": {"progressToken": "p"}},
        {"name": "t", "arguments": None, "task": {"ttl": 5}},
    ],
    "PaginatedRequestParams": [{}, {"cursor": "c"}, {"cursor": None, "_meta": {}}],
    "ReadResourceRequestParams": [{"uri": "conversation://a"}],
    "CancelledNotificationParams": [{}, {"requestId": 1, "reason": "why"}, {"requestId": "s1"}],
    "ElicitResult": [
        {"action": "decline"},
        {"action": "accept", "content": {"decision": "allow", "n": 1.5, "tags": ["a"], "x": None}},
    ],
}

INVALID: dict[str, list[Any]] = {
    "InitializeRequestParams": [
        {},
        {"protocolVersion": 1, "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}},
        {
            "protocolVersion": "v",
            "capabilities": {"roots": {"listChanged": [1]}},
            "clientInfo": {"name": "a", "version": "1"},
        },
        {
            "protocolVersion": "v",
            "capabilities": {},
            "clientInfo": {"name": "a", "version": "1", "icons": [{}]},
        },
        {
            "protocolVersion": "v",
            "capabilities": {},
            "clientInfo": {"name": "a", "version": "1", "icons": [{"src": "x", "theme": "red"}]},
        },
    ],
    "CallToolRequestParams": [
        {},
        {"name": 1},
        {"name": "t", "arguments": []},
        {"name": "t", "_meta": {"progressToken": 1.5}},
    ],
    "PaginatedRequestParams": [{"cursor": 1}, [], "x"],
    "ReadResourceRequestParams": [{}, {"uri": None}],
    "CancelledNotificationParams": [{"requestId": 1.5}, {"reason": 3}],
    "ElicitResult": [{}, {"action": "maybe"}, {"action": "accept", "content": {"x": {"y": 1}}}],
}


def _official(name: str, value: Any) -> bool:
    try:
        getattr(surface, name).model_validate(value, by_name=False)
    except ValidationError:
        return False
    return True


def _ours(name: str, value: Any) -> bool:
    try:
        validate.read(name, value)
    except validate.Invalid:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in VALID.items() for value in values]
)
def test_validate_accepts_what_the_official_models_accept(name: str, value: Any) -> None:
    assert _official(name, value)
    assert _ours(name, value)


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in INVALID.items() for value in values]
)
def test_validate_rejects_what_the_official_models_reject(name: str, value: Any) -> None:
    assert not _official(name, value)
    assert not _ours(name, value)


def test_an_optional_null_is_read_as_absent() -> None:
    read = validate.read("CallToolRequestParams", {"name": "t", "arguments": None, "_meta": None})
    assert read == {"name": "t"}


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False)
    | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _shaped(name: str) -> st.SearchStrategy[Any]:
    """Objects with the schema's own property names (and a stray one), holding any JSON."""
    schema = wire.SCHEMAS[name]
    keys = [*schema.get("properties", {}), "stray"]
    leaf = _JSON | st.sampled_from(VALID[name])
    return st.dictionaries(st.sampled_from(keys), leaf, max_size=len(keys)) | st.sampled_from(
        VALID[name]
    )


@pytest.mark.parametrize("name", sorted(wire.SCHEMAS))
@given(data=st.data())
def test_validate_accepts_nothing_the_official_models_reject(
    name: str, data: st.DataObject
) -> None:
    value = data.draw(_shaped(name))
    if _ours(name, value):
        assert _official(name, value), value


# --- the tools' schemas -------------------------------------------------------------------

ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("conversation_start", {"prompt": "hi"}),
    (
        "conversation_start",
        {
            "prompt": "hi",
            "provider": "p",
            "model": "m",
            "instructions": "i",
            "conversationId": "a.b-c_d",
        },
    ),
    ("conversation_start", {}),
    ("conversation_start", {"prompt": None}),
    ("conversation_start", {"prompt": "hi", "conversationId": ""}),
    ("conversation_start", {"prompt": "hi", "conversationId": "a b"}),
    ("conversation_start", {"prompt": "hi", "extra": 1}),
    ("conversation_reply", {"conversationId": "c", "prompt": "x"}),
    ("conversation_reply", {"conversationId": 1, "prompt": "x"}),
    ("conversation_fork", {"conversationId": "c", "dropLastMessages": 0}),
    ("conversation_fork", {"conversationId": "c", "dropLastMessages": 1.5}),
    ("conversation_get", {"conversationId": "c", "includeHistory": False}),
    ("conversation_list", {}),
    ("conversation_list", {"limit": 0}),
    ("conversation_list", {"limit": 500, "cursor": "x"}),
    ("conversation_remove", {"conversationId": "c", "deleteHistory": 1}),
]


@pytest.mark.parametrize(("tool", "arguments"), ARGUMENTS)
def test_validate_reads_tool_arguments_as_jsonschema_does(tool: str, arguments: Any) -> None:
    schema = next(t["inputSchema"] for t in TOOLS if t["name"] == tool)
    expected = jsonschema.Draft202012Validator(schema).is_valid(arguments)
    try:
        validate.check(schema, dict(arguments))
    except validate.Invalid:
        ours = False
    else:
        ours = True
    assert ours == expected


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool["name"])
def test_each_output_schema_admits_an_error(tool: Any) -> None:
    error = {"error": {"code": "busy", "message": "conversation is running a turn: c"}}
    jsonschema.validate(error, tool["outputSchema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"oops": True}, tool["outputSchema"])


def test_the_approval_form_is_a_schema_elicitation_allows() -> None:
    params = {"message": "Allow it?", "requestedSchema": APPROVAL_SCHEMA}
    surface.ElicitRequestFormParams.model_validate(params, by_name=False)
    check_message(
        {"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": params}, None
    )


# --- the strict checker -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "answering"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": {"tools": [], "nextCursor": None}}, "tools/list"),
        ({"jsonrpc": "2.0", "id": 1, "result": {"tools": [], "extra": 1}}, "tools/list"),
        (
            {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": 5}]}},
            "tools/call",
        ),
        ({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": 1}}, "tools/call"),
        (
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": 1, "progress": "3"},
            },
            None,
        ),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, None),
        ({"id": 1, "result": {}}, "ping"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m"}, "result": {}}, "ping"),
    ],
)
def test_the_strict_checker_refuses_what_lenient_models_allow(
    message: dict[str, Any], answering: str | None
) -> None:
    with pytest.raises(WireViolation):
        check_message(message, answering)
