"""The six conversation tools (docs/protocol.md §16): names, descriptions, input and output schemas.

Every result carries `structuredContent`, a success or `{error: {code, message}}`,
so each outputSchema admits both (clients such as the TypeScript SDK check
structuredContent against it even when `isError` is true).
"""

from typing import Any

from convmgr.dialects.mcp.wire import Tool

Schema = dict[str, Any]

# docs/protocol.md §4's conversation ids.
CONVERSATION_ID: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$",
    "description": "A conversation id: 1 to 128 characters of A-Z a-z 0-9 . _ -, not first a dot.",
}
_PROMPT: Schema = {"type": "string", "description": "The user message."}
# The 1.1 limit on instructions (1 MiB as JSON text), in characters.
_MAX_INSTRUCTIONS = 1 << 20

_NULLABLE_STRING: Schema = {"type": ["string", "null"]}

CONVERSATION_INFO: dict[str, Schema] = {
    "conversationId": {"type": "string"},
    "status": {"type": "string", "enum": ["idle", "running"]},
    "loaded": {"type": "boolean"},
    "provider": {"type": "string"},
    "model": {"type": "string"},
    "createdAt": {"type": "string"},
    "updatedAt": {"type": "string"},
    "forkedFrom": _NULLABLE_STRING,
    "historyLength": {"type": "integer"},
    "lastSeq": {"type": "integer"},
    "preview": _NULLABLE_STRING,
    "metadata": {"type": ["object", "null"]},
}

ERROR: Schema = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "not_found, busy, exists, locked, overloaded, "
                    "invalid_arguments, storage_failed, turn_failed, aborted or internal",
                },
                "message": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def _object(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {"type": "object", "properties": properties, "required": required}


def _arguments(properties: dict[str, Schema], required: list[str]) -> Schema:
    """An inputSchema: unknown arguments are refused, so a misspelt one is noticed."""
    return {**_object(properties, required), "additionalProperties": False}


def _output(success: Schema) -> Schema:
    """An outputSchema: the success object, or the error object of a failed call."""
    return {"type": "object", "anyOf": [success, ERROR]}


_TURN = _object(
    {
        "conversationId": {"type": "string"},
        "turnId": {"type": "string"},
        "reply": {"type": "string", "description": "The model's final reply of the turn."},
    },
    ["conversationId", "turnId", "reply"],
)

_INFO = _object(
    {
        **CONVERSATION_INFO,
        "history": {
            "type": "array",
            "items": {"type": "object"},
            "description": "The history items (messages, reasoning, tool calls and outputs).",
        },
    },
    list(CONVERSATION_INFO),
)

_FORKED = _object({"conversationId": {"type": "string"}}, ["conversationId"])

TOOLS: list[Tool] = [
    {
        "name": "conversation_start",
        "title": "Start a conversation",
        "description": "Start a new conversation with a model and run its first turn: the "
        "reply is the result. The conversation is stored; continue it with "
        "conversation_reply and its conversationId.",
        "inputSchema": _arguments(
            {
                "prompt": _PROMPT,
                "provider": {
                    "type": "string",
                    "description": "A configured provider (default: the default one).",
                },
                "model": {"type": "string", "description": "The model (default: the provider's)."},
                "instructions": {
                    "type": "string",
                    "maxLength": _MAX_INSTRUCTIONS,
                    "description": "System instructions for the whole conversation.",
                },
                "conversationId": {**CONVERSATION_ID, "description": "Its id (default: a UUID)."},
            },
            ["prompt"],
        ),
        "outputSchema": _output(_TURN),
        "annotations": {"title": "Start a conversation", "openWorldHint": True},
    },
    {
        "name": "conversation_reply",
        "title": "Continue a conversation",
        "description": "Send the next user message to a conversation and run the turn: the "
        "reply is the result. A stored conversation is loaded first.",
        "inputSchema": _arguments(
            {"conversationId": CONVERSATION_ID, "prompt": _PROMPT}, ["conversationId", "prompt"]
        ),
        "outputSchema": _output(_TURN),
        "annotations": {"title": "Continue a conversation", "openWorldHint": True},
    },
    {
        "name": "conversation_fork",
        "title": "Fork a conversation",
        "description": "Copy a conversation into a new one, optionally without its last user "
        "messages (and everything after each). Gives the new conversationId.",
        "inputSchema": _arguments(
            {
                "conversationId": CONVERSATION_ID,
                "dropLastMessages": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many of the last user messages to drop (default 0).",
                },
            },
            ["conversationId"],
        ),
        "outputSchema": _output(_FORKED),
        "annotations": {"title": "Fork a conversation", "idempotentHint": False},
    },
    {
        "name": "conversation_get",
        "title": "Look at a conversation",
        "description": "A conversation's settings and state, and with includeHistory its "
        "whole history.",
        "inputSchema": _arguments(
            {
                "conversationId": CONVERSATION_ID,
                "includeHistory": {"type": "boolean", "description": "Default false."},
            },
            ["conversationId"],
        ),
        "outputSchema": _output(_INFO),
        "annotations": {"title": "Look at a conversation", "readOnlyHint": True},
    },
    {
        "name": "conversation_list",
        "title": "List conversations",
        "description": "Stored conversations, most recently updated first, a page at a time: "
        "pass nextCursor back as cursor for the next page.",
        "inputSchema": _arguments(
            {
                "cursor": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            [],
        ),
        "outputSchema": _output(
            _object(
                {
                    "items": {"type": "array", "items": _object(CONVERSATION_INFO, [])},
                    "nextCursor": _NULLABLE_STRING,
                },
                ["items", "nextCursor"],
            )
        ),
        "annotations": {"title": "List conversations", "readOnlyHint": True},
    },
    {
        "name": "conversation_remove",
        "title": "Remove a conversation",
        "description": "Unload a conversation (a running turn is aborted). Its history stays "
        "stored, and resumable, unless deleteHistory is true.",
        "inputSchema": _arguments(
            {
                "conversationId": CONVERSATION_ID,
                "deleteHistory": {"type": "boolean", "description": "Default false."},
            },
            ["conversationId"],
        ),
        "outputSchema": _output(_object({"removed": {"type": "boolean"}}, ["removed"])),
        "annotations": {"title": "Remove a conversation", "destructiveHint": True},
    },
]

BY_NAME: dict[str, Tool] = {tool["name"]: tool for tool in TOOLS}
