"""MCP's wire types as convmgr uses them, generated from the official `mcp-types`: do not edit.

Regenerate with `python -m convmgr.dialects.mcp.generate` (tests/test_mcp_wire.py
fails when this file drifts from the installed package). Source: mcp-types
2.3.0, the 2025-11-25 surface models, which the SDK checks every handshake
revision's traffic against. The TypedDicts type what convmgr writes and reads;
SCHEMAS (the same models' JSON Schemas, documentation trimmed) check what it
reads, through validate.py. Neither needs pydantic or mcp_types at run time.
"""

from typing import Any, Final, Literal, NotRequired, TypedDict

MCP_TYPES_VERSION: Final = "2.3.0"
HANDSHAKE_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION: Final = "2025-11-25"
PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603


class Implementation(TypedDict):
    """MCP `Implementation`."""

    description: NotRequired[str]
    icons: NotRequired[list[dict[str, Any]]]
    name: str
    title: NotRequired[str]
    version: str
    websiteUrl: NotRequired[str]


class ClientCapabilities(TypedDict):
    """MCP `ClientCapabilities`."""

    elicitation: NotRequired[dict[str, Any]]
    experimental: NotRequired[dict[str, Any]]
    roots: NotRequired[dict[str, Any]]
    sampling: NotRequired[dict[str, Any]]
    tasks: NotRequired[dict[str, Any]]


class RequestMeta(TypedDict):
    """MCP `RequestMeta`."""

    progressToken: NotRequired[str | int]


class InitializeRequestParams(TypedDict):
    """MCP `InitializeRequestParams`."""

    _meta: NotRequired[RequestMeta]
    capabilities: ClientCapabilities
    clientInfo: Implementation
    protocolVersion: str


class ResourcesCapability(TypedDict):
    """MCP `ResourcesCapability`."""

    listChanged: NotRequired[bool]
    subscribe: NotRequired[bool]


class ToolsCapability(TypedDict):
    """MCP `ToolsCapability`."""

    listChanged: NotRequired[bool]


class ServerCapabilities(TypedDict):
    """MCP `ServerCapabilities`."""

    completions: NotRequired[dict[str, Any]]
    experimental: NotRequired[dict[str, Any]]
    logging: NotRequired[dict[str, Any]]
    prompts: NotRequired[dict[str, Any]]
    resources: NotRequired[ResourcesCapability]
    tasks: NotRequired[dict[str, Any]]
    tools: NotRequired[ToolsCapability]


class InitializeResult(TypedDict):
    """MCP `InitializeResult`."""

    _meta: NotRequired[dict[str, Any]]
    capabilities: ServerCapabilities
    instructions: NotRequired[str]
    protocolVersion: str
    serverInfo: Implementation


class ToolAnnotations(TypedDict):
    """MCP `ToolAnnotations`."""

    destructiveHint: NotRequired[bool]
    idempotentHint: NotRequired[bool]
    openWorldHint: NotRequired[bool]
    readOnlyHint: NotRequired[bool]
    title: NotRequired[str]


class Tool(TypedDict):
    """MCP `Tool`."""

    _meta: NotRequired[dict[str, Any]]
    annotations: NotRequired[ToolAnnotations]
    description: NotRequired[str]
    execution: NotRequired[dict[str, Any]]
    icons: NotRequired[list[dict[str, Any]]]
    inputSchema: dict[str, Any]
    name: str
    outputSchema: NotRequired[dict[str, Any]]
    title: NotRequired[str]


class ListToolsResult(TypedDict):
    """MCP `ListToolsResult`."""

    _meta: NotRequired[dict[str, Any]]
    nextCursor: NotRequired[str]
    tools: list[Tool]


class PaginatedRequestParams(TypedDict):
    """MCP `PaginatedRequestParams`."""

    _meta: NotRequired[RequestMeta]
    cursor: NotRequired[str]


class CallToolRequestParams(TypedDict):
    """MCP `CallToolRequestParams`."""

    _meta: NotRequired[RequestMeta]
    arguments: NotRequired[dict[str, Any]]
    name: str
    task: NotRequired[dict[str, Any]]


class Annotations(TypedDict):
    """MCP `Annotations`."""

    audience: NotRequired[list[Literal["assistant", "user"]]]
    lastModified: NotRequired[str]
    priority: NotRequired[float]


class TextContent(TypedDict):
    """MCP `TextContent`."""

    _meta: NotRequired[dict[str, Any]]
    annotations: NotRequired[Annotations]
    text: str
    type: Literal["text"]


class CallToolResult(TypedDict):
    """MCP `CallToolResult`."""

    _meta: NotRequired[dict[str, Any]]
    content: list[TextContent | dict[str, Any]]
    isError: NotRequired[bool]
    structuredContent: NotRequired[dict[str, Any]]


class Resource(TypedDict):
    """MCP `Resource`."""

    _meta: NotRequired[dict[str, Any]]
    annotations: NotRequired[Annotations]
    description: NotRequired[str]
    icons: NotRequired[list[dict[str, Any]]]
    mimeType: NotRequired[str]
    name: str
    size: NotRequired[int]
    title: NotRequired[str]
    uri: str


class ListResourcesResult(TypedDict):
    """MCP `ListResourcesResult`."""

    _meta: NotRequired[dict[str, Any]]
    nextCursor: NotRequired[str]
    resources: list[Resource]


class ResourceTemplate(TypedDict):
    """MCP `ResourceTemplate`."""

    _meta: NotRequired[dict[str, Any]]
    annotations: NotRequired[Annotations]
    description: NotRequired[str]
    icons: NotRequired[list[dict[str, Any]]]
    mimeType: NotRequired[str]
    name: str
    title: NotRequired[str]
    uriTemplate: str


class ListResourceTemplatesResult(TypedDict):
    """MCP `ListResourceTemplatesResult`."""

    _meta: NotRequired[dict[str, Any]]
    nextCursor: NotRequired[str]
    resourceTemplates: list[ResourceTemplate]


class ReadResourceRequestParams(TypedDict):
    """MCP `ReadResourceRequestParams`."""

    _meta: NotRequired[RequestMeta]
    uri: str


class TextResourceContents(TypedDict):
    """MCP `TextResourceContents`."""

    _meta: NotRequired[dict[str, Any]]
    mimeType: NotRequired[str]
    text: str
    uri: str


class ReadResourceResult(TypedDict):
    """MCP `ReadResourceResult`."""

    _meta: NotRequired[dict[str, Any]]
    contents: list[TextResourceContents | dict[str, Any]]


class ProgressNotificationParams(TypedDict):
    """MCP `ProgressNotificationParams`."""

    _meta: NotRequired[dict[str, Any]]
    message: NotRequired[str]
    progress: float
    progressToken: str | int
    total: NotRequired[float]


class CancelledNotificationParams(TypedDict):
    """MCP `CancelledNotificationParams`."""

    _meta: NotRequired[dict[str, Any]]
    reason: NotRequired[str]
    requestId: NotRequired[str | int]


class ElicitRequestFormParams(TypedDict):
    """MCP `ElicitRequestFormParams`."""

    _meta: NotRequired[RequestMeta]
    message: str
    mode: NotRequired[Literal["form"]]
    requestedSchema: dict[str, Any]
    task: NotRequired[dict[str, Any]]


class ElicitResult(TypedDict):
    """MCP `ElicitResult`."""

    _meta: NotRequired[dict[str, Any]]
    action: Literal["accept", "cancel", "decline"]
    content: NotRequired[dict[str, Any]]


SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "CallToolRequestParams": {
        "$defs": {
            "Meta": {
                "additionalProperties": True,
                "properties": {
                    "progressToken": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "type": "object",
            },
            "TaskMetadata": {"properties": {"ttl": {"type": "integer"}}, "type": "object"},
        },
        "properties": {
            "_meta": {"$ref": "#/$defs/Meta"},
            "arguments": {"additionalProperties": True, "type": "object"},
            "name": {"type": "string"},
            "task": {"$ref": "#/$defs/TaskMetadata"},
        },
        "required": ["name"],
        "type": "object",
    },
    "CancelledNotificationParams": {
        "properties": {
            "_meta": {"additionalProperties": True, "type": "object"},
            "reason": {"type": "string"},
            "requestId": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "type": "object",
    },
    "ElicitResult": {
        "properties": {
            "_meta": {"additionalProperties": True, "type": "object"},
            "action": {"enum": ["accept", "cancel", "decline"], "type": "string"},
            "content": {
                "additionalProperties": {
                    "anyOf": [
                        {"items": {"type": "string"}, "type": "array"},
                        {"type": "string"},
                        {"type": "integer"},
                        {"type": "number"},
                        {"type": "boolean"},
                        {"type": "null"},
                    ],
                },
                "type": "object",
            },
        },
        "required": ["action"],
        "type": "object",
    },
    "InitializeRequestParams": {
        "$defs": {
            "ClientCapabilities": {
                "properties": {
                    "elicitation": {"$ref": "#/$defs/Elicitation"},
                    "experimental": {
                        "additionalProperties": {"additionalProperties": True, "type": "object"},
                        "type": "object",
                    },
                    "roots": {"$ref": "#/$defs/Roots"},
                    "sampling": {"$ref": "#/$defs/Sampling"},
                    "tasks": {"$ref": "#/$defs/Tasks"},
                },
                "type": "object",
            },
            "Elicitation": {
                "properties": {
                    "form": {"additionalProperties": True, "type": "object"},
                    "url": {"additionalProperties": True, "type": "object"},
                },
                "type": "object",
            },
            "Elicitation1": {
                "properties": {"create": {"additionalProperties": True, "type": "object"}},
                "type": "object",
            },
            "Icon": {
                "properties": {
                    "mimeType": {"type": "string"},
                    "sizes": {"items": {"type": "string"}, "type": "array"},
                    "src": {"type": "string"},
                    "theme": {"enum": ["light", "dark"], "type": "string"},
                },
                "required": ["src"],
                "type": "object",
            },
            "Implementation": {
                "properties": {
                    "description": {"type": "string"},
                    "icons": {"items": {"$ref": "#/$defs/Icon"}, "type": "array"},
                    "name": {"type": "string"},
                    "title": {"type": "string"},
                    "version": {"type": "string"},
                    "websiteUrl": {"type": "string"},
                },
                "required": ["name", "version"],
                "type": "object",
            },
            "Meta": {
                "additionalProperties": True,
                "properties": {
                    "progressToken": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "type": "object",
            },
            "Requests": {
                "properties": {
                    "elicitation": {"$ref": "#/$defs/Elicitation1"},
                    "sampling": {"$ref": "#/$defs/Sampling1"},
                },
                "type": "object",
            },
            "Roots": {"properties": {"listChanged": {"type": "boolean"}}, "type": "object"},
            "Sampling": {
                "properties": {
                    "context": {"additionalProperties": True, "type": "object"},
                    "tools": {"additionalProperties": True, "type": "object"},
                },
                "type": "object",
            },
            "Sampling1": {
                "properties": {"createMessage": {"additionalProperties": True, "type": "object"}},
                "type": "object",
            },
            "Tasks": {
                "properties": {
                    "cancel": {"additionalProperties": True, "type": "object"},
                    "list": {"additionalProperties": True, "type": "object"},
                    "requests": {"$ref": "#/$defs/Requests"},
                },
                "type": "object",
            },
        },
        "properties": {
            "_meta": {"$ref": "#/$defs/Meta"},
            "capabilities": {"$ref": "#/$defs/ClientCapabilities"},
            "clientInfo": {"$ref": "#/$defs/Implementation"},
            "protocolVersion": {"type": "string"},
        },
        "required": ["capabilities", "clientInfo", "protocolVersion"],
        "type": "object",
    },
    "PaginatedRequestParams": {
        "$defs": {
            "Meta": {
                "additionalProperties": True,
                "properties": {
                    "progressToken": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "type": "object",
            },
        },
        "properties": {"_meta": {"$ref": "#/$defs/Meta"}, "cursor": {"type": "string"}},
        "type": "object",
    },
    "ReadResourceRequestParams": {
        "$defs": {
            "Meta": {
                "additionalProperties": True,
                "properties": {
                    "progressToken": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "type": "object",
            },
        },
        "properties": {"_meta": {"$ref": "#/$defs/Meta"}, "uri": {"type": "string"}},
        "required": ["uri"],
        "type": "object",
    },
}
