"""Writes wire.py: the MCP types convmgr uses, from the official `mcp-types` package.

Build-time only (`python -m convmgr.dialects.mcp.generate`); nothing at run time
imports this module, so `convmgr mcp` starts without pydantic models or
mcp_types. The source is the package's 2025-11-25 surface models: the SDK
validates every handshake revision's traffic against them. Each model's JSON
Schema (pydantic's, so it accepts what the models accept) becomes a TypedDict
for what convmgr writes and reads, and, for what it reads, a trimmed schema
that validate.py checks. tests/test_mcp_wire.py fails when wire.py drifts.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mcp_types
import mcp_types._v2025_11_25 as surface
from mcp_types import jsonrpc
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import BaseModel

WIRE = Path(__file__).with_name("wire.py")

# The surface models convmgr writes or reads, in dependency order.
TYPED: tuple[str, ...] = (
    "Implementation",
    "ClientCapabilities",
    "InitializeRequestParams",
    "ServerCapabilities",
    "InitializeResult",
    "ToolAnnotations",
    "Tool",
    "ListToolsResult",
    "PaginatedRequestParams",
    "CallToolRequestParams",
    "TextContent",
    "CallToolResult",
    "Annotations",
    "Resource",
    "ListResourcesResult",
    "ResourceTemplate",
    "ListResourceTemplatesResult",
    "ReadResourceRequestParams",
    "TextResourceContents",
    "ReadResourceResult",
    "ProgressNotificationParams",
    "CancelledNotificationParams",
    "ElicitRequestFormParams",
    "ElicitResult",
)

# What convmgr reads from clients: these get a schema in SCHEMAS.
READ: tuple[str, ...] = (
    "InitializeRequestParams",
    "PaginatedRequestParams",
    "CallToolRequestParams",
    "ReadResourceRequestParams",
    "CancelledNotificationParams",
    "ElicitResult",
)

# Nested definitions worth a type of their own, under a clearer name than pydantic's.
NESTED: dict[str, str] = {
    "Tools1": "ToolsCapability",
    "Resources": "ResourcesCapability",
    "Meta": "RequestMeta",
}

_CODES = ("PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR")

# Schema keys that only document: dropped from SCHEMAS.
_DOC_KEYS = frozenset({"title", "description", "default", "examples"})


def model(name: str) -> type[BaseModel]:
    """A 2025-11-25 surface model by name."""
    found = getattr(surface, name)
    assert isinstance(found, type) and issubclass(found, BaseModel), name
    return found


def schema_of(name: str) -> dict[str, Any]:
    """The model's JSON Schema, with the names of what it is made of."""
    schema: dict[str, Any] = model(name).model_json_schema(by_alias=True)
    return schema


def _non_null(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in options if o.get("type") != "null"]


class TypeWriter:
    """TypedDict source for JSON Schemas: one class per model and per named nested definition."""

    def __init__(self) -> None:
        # In dependency order: a class comes after every class its fields name.
        self.classes: dict[str, str] = {}
        self._started: set[str] = set()

    def python_type(self, schema: dict[str, Any], defs: dict[str, Any]) -> str:
        """The annotation for a property's schema."""
        if "$ref" in schema:
            ref = str(schema["$ref"]).rsplit("/", 1)[1]
            if ref in TYPED:
                self.add(ref, defs[ref], defs)
                return ref
            if ref in NESTED:
                self.add(NESTED[ref], defs[ref], defs)
                return NESTED[ref]
            return "dict[str, Any]"
        for union in ("anyOf", "oneOf"):
            if union in schema:
                parts = [self.python_type(s, defs) for s in _non_null(schema[union])]
                if len(parts) < len(schema[union]):
                    parts.append("None")
                return " | ".join(dict.fromkeys(parts))
        if "const" in schema:
            return f"Literal[{json.dumps(schema['const'])}]"
        if "enum" in schema:
            return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
        kind = schema.get("type")
        if kind == "array":
            return f"list[{self.python_type(schema.get('items', {}), defs)}]"
        simple = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
        if kind in simple:
            return simple[kind]
        if kind == "null":
            return "None"
        if kind == "object":
            return "dict[str, Any]"
        return "Any"

    def add(self, name: str, schema: dict[str, Any], defs: dict[str, Any]) -> None:
        """A TypedDict for an object schema (once)."""
        if name in self._started:
            return
        self._started.add(name)
        required = set(schema.get("required", ()))
        lines = [f"class {name}(TypedDict):", f'    """MCP `{name}`."""', ""]
        for key, prop in schema.get("properties", {}).items():
            annotation = self.python_type(prop, defs)
            if key in required:
                lines.append(f"    {key}: {annotation}")
            else:
                # Optional fields are left out rather than sent as null (validate.py
                # reads an optional null as absent), so the type has no None.
                parts = [p for p in annotation.split(" | ") if p != "None"] or ["None"]
                lines.append(f"    {key}: NotRequired[{' | '.join(parts)}]")
        self.classes[name] = "\n".join(lines)


def trimmed(schema: Any) -> Any:
    """A schema without documentation keys, an optional property's null branch folded away."""
    if isinstance(schema, list):
        return [trimmed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DOC_KEYS and not (key == "title" and isinstance(value, dict)):
            continue
        if key == "properties":
            required = set(schema.get("required", ()))
            out[key] = {
                name: trimmed(_fold_null(prop) if name not in required else prop)
                for name, prop in value.items()
            }
        else:
            out[key] = trimmed(value)
    return out


def _fold_null(prop: dict[str, Any]) -> dict[str, Any]:
    """`X | None` of an optional property is X: validate.py reads a null there as absent."""
    options = prop.get("anyOf")
    if options is None:
        return prop
    rest = _non_null(options)
    if len(rest) == len(options):
        return prop
    folded = {k: v for k, v in prop.items() if k != "anyOf"}
    return {**folded, **rest[0]} if len(rest) == 1 else {**folded, "anyOf": rest}


def literal(value: Any, indent: int = 0, column: int = 60) -> str:
    """A JSON value as Python source: on one line when it fits, else one key or item a line.

    `column` is where the value starts on its line.
    """
    flat = _flat(value)
    if column + len(flat) < 100 or not isinstance(value, dict | list | tuple) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = []
        for key in sorted(value):
            head = f"{pad}{json.dumps(key)}: "
            items.append(f"{head}{literal(value[key], indent + 4, len(head))},")
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{pad}{literal(v, indent + 4, len(pad))}," for v in value]
    opening, closing = "()" if isinstance(value, tuple) else "[]"
    return opening + "\n" + "\n".join(items) + "\n" + " " * indent + closing


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_flat(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_flat, value)) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(_flat, value)) + "]"
    if isinstance(value, bool) or value is None:
        return repr(value)
    return json.dumps(value)


_HEADER = """\
\"\"\"MCP's wire types as convmgr uses them, generated from the official `mcp-types`: do not edit.

Regenerate with `python -m convmgr.dialects.mcp.generate` (tests/test_mcp_wire.py
fails when this file drifts from the installed package). Source: mcp-types
{version}, the 2025-11-25 surface models, which the SDK checks every handshake
revision's traffic against. The TypedDicts type what convmgr writes and reads;
SCHEMAS (the same models' JSON Schemas, documentation trimmed) check what it
reads, through validate.py. Neither needs pydantic or mcp_types at run time.
\"\"\"

from typing import Any, Final, Literal, NotRequired, TypedDict

"""


def render() -> str:
    """The text of wire.py."""
    writer = TypeWriter()
    for name in TYPED:
        schema = schema_of(name)
        writer.add(name, schema, schema.get("$defs", {}))
    constants = {
        "MCP_TYPES_VERSION": json.dumps(version("mcp-types")),
        "HANDSHAKE_PROTOCOL_VERSIONS": literal(tuple(HANDSHAKE_PROTOCOL_VERSIONS), 0, 37),
        "LATEST_HANDSHAKE_VERSION": json.dumps(LATEST_HANDSHAKE_VERSION),
        "PROTOCOL_VERSION_META_KEY": json.dumps(mcp_types.PROTOCOL_VERSION_META_KEY),
        **{code: str(getattr(jsonrpc, code)) for code in _CODES},
    }
    schemas = {name: trimmed(schema_of(name)) for name in READ}
    return (
        _HEADER.format(version=version("mcp-types"))
        + "".join(f"{name}: Final = {value}\n" for name, value in constants.items())
        + "\n\n"
        + "\n\n\n".join(writer.classes.values())
        + "\n\n\nSCHEMAS: Final[dict[str, dict[str, Any]]] = "
        + literal(schemas)
        + "\n"
    )


def main() -> int:
    """Write wire.py (or, with --check, say whether it is current)."""
    text = render()
    if "--check" in sys.argv[1:]:
        current = WIRE.read_text(encoding="utf-8") == text
        sys.stderr.write("wire.py is current\n" if current else "wire.py is out of date\n")
        return 0 if current else 1
    WIRE.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {WIRE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
