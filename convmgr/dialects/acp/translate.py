"""Core events and stored items as ACP `session/update`s; the editor's tools as the model sees them.

Updates are built as plain dicts (a chunk per streamed delta is the hot path);
the tests validate every message convmgr writes against `acp.schema`.
"""

import json
from typing import Any

from convmgr.core import events as e
from convmgr.model import Item

READ_FILE = "read_file"
WRITE_FILE = "write_file"
RUN_COMMAND = "run_command"
# Calls that change something on the user's machine: approved first (docs/protocol.md §15).
ASKED_FIRST = frozenset({WRITE_FILE, RUN_COMMAND})

_PATH = "the file (relative: to the session's cwd)"
_TOOLS: dict[str, dict[str, Any]] = {
    READ_FILE: {
        "name": READ_FILE,
        "description": "Read a text file in the editor (unsaved changes included).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": _PATH},
                "line": {"type": "integer", "minimum": 1, "description": "first line (from 1)"},
                "limit": {"type": "integer", "minimum": 1, "description": "most lines to read"},
            },
            "required": ["path"],
        },
    },
    WRITE_FILE: {
        "name": WRITE_FILE,
        "description": "Write a text file through the editor (the user approves each write).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": _PATH},
                "content": {"type": "string", "description": "the file's whole new text"},
            },
            "required": ["path", "content"],
        },
    },
    RUN_COMMAND: {
        "name": RUN_COMMAND,
        "description": "Run a command in the editor's terminal (the user approves each command); "
        "returns its output and exit status.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "the program to run"},
                "args": {"type": "array", "items": {"type": "string"}},
                "cwd": {"type": "string", "description": "default: the session's cwd"},
            },
            "required": ["command"],
        },
    },
}

_KINDS = {READ_FILE: "read", WRITE_FILE: "edit", RUN_COMMAND: "execute"}
_TITLE_ARGUMENTS = 60


def editor_tools(read: bool, write: bool, terminal: bool) -> list[dict[str, Any]]:
    """The client tools an ACP client's capabilities give, in their settings shape."""
    wanted = ((READ_FILE, read), (WRITE_FILE, write), (RUN_COMMAND, terminal))
    return [_TOOLS[name] for name, given in wanted if given]


def tool_kind(name: str) -> str:
    """ACP's ToolKind for a tool of the model's."""
    return _KINDS.get(name, "other")


def tool_title(name: str, arguments: Any) -> str:
    """The tool's name and a short form of its arguments."""
    if isinstance(arguments, dict) and name in (READ_FILE, WRITE_FILE):
        short = str(arguments.get("path", ""))
    elif isinstance(arguments, dict) and name == RUN_COMMAND:
        args = arguments.get("args")
        words = [str(arguments.get("command", ""))]
        if isinstance(args, list):
            words += [str(arg) for arg in args]
        short = " ".join(words)
    elif isinstance(arguments, str):
        short = arguments
    else:
        short = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    if len(short) > _TITLE_ARGUMENTS:
        short = short[: _TITLE_ARGUMENTS - 1] + "…"
    return f"{name} {short}" if short and short != "{}" else name


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A `tool_call` update: pending, titled, of its kind."""
    update: dict[str, Any] = {
        "sessionUpdate": "tool_call",
        "toolCallId": call_id,
        "title": tool_title(name, arguments),
        "kind": tool_kind(name),
        "status": "pending",
        "rawInput": arguments,
    }
    if name in (READ_FILE, WRITE_FILE) and isinstance(arguments, dict):
        path = arguments.get("path")
        if isinstance(path, str) and path:
            update["locations"] = [{"path": path}]
    return update


def tool_done(call_id: str, text: str, is_error: bool) -> dict[str, Any]:
    """A `tool_call_update` that ends a call: completed or failed, its output as content."""
    return {
        "sessionUpdate": "tool_call_update",
        "toolCallId": call_id,
        "status": "failed" if is_error else "completed",
        "content": [{"type": "content", "content": {"type": "text", "text": text}}],
    }


def _chunk(kind: str, text: str) -> dict[str, Any]:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


def update_of(event: e.Event) -> dict[str, Any] | None:
    """The `session/update` of a core event; None for those ACP has no update for."""
    match event:
        case e.AgentMessageDelta(delta):
            return _chunk("agent_message_chunk", delta)
        case e.ReasoningDelta(delta):
            return _chunk("agent_thought_chunk", delta)
        case e.ToolCall(call_id, name, arguments):
            return tool_call(call_id, name, arguments)
        case e.ToolCallStarted(call_id):
            return {
                "sessionUpdate": "tool_call_update",
                "toolCallId": call_id,
                "status": "in_progress",
            }
        case e.ToolResult(call_id, text, is_error):
            return tool_done(call_id, text, is_error)
        case e.StreamError(message, attempt):
            # ACP cannot take back the chunks already sent: say that the reply starts over.
            return _chunk(
                "agent_thought_chunk",
                f"\n[the model call failed ({message}); retrying, attempt {attempt}]\n",
            )
        case e.ToolSourceFailed(server, message):
            note = f"\n[MCP server {server} is unavailable: {message}]\n"
            return _chunk("agent_thought_chunk", note)
    # TurnStarted, AgentMessage (already streamed), TokenUsage (in the prompt's answer),
    # terminal events (the prompt's answer) and ShutdownComplete.
    return None


def stop_reason(event: e.TurnComplete | e.TurnAborted | e.TurnFailed) -> str | None:
    """The prompt's stopReason for a turn's terminal event; None for a failed turn (an error)."""
    if isinstance(event, e.TurnComplete):
        return {"length": "max_tokens", "refusal": "refusal"}.get(event.finish_reason, "end_turn")
    if isinstance(event, e.TurnAborted):
        return "cancelled"
    return "max_turn_requests" if event.code == "tool_rounds" else None


def replay_updates(items: list[Item]) -> list[dict[str, Any]]:
    """A stored history as the updates `session/load` replays, in order."""
    updates: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            text = "\n".join(str(part.get("text", "")) for part in item.get("content", ()))
            role = "user_message_chunk" if item.get("role") == "user" else "agent_message_chunk"
            if text:
                updates.append(_chunk(role, text))
        elif kind == "reasoning":
            updates.append(_chunk("agent_thought_chunk", str(item.get("text", ""))))
        elif kind == "functionCall":
            raw = str(item.get("arguments", ""))
            try:
                arguments: Any = json.loads(raw)
            except ValueError:
                arguments = raw
            updates.append(tool_call(str(item["callId"]), str(item.get("name", "")), arguments))
        elif kind == "functionCallOutput":
            updates.append(
                tool_done(
                    str(item["callId"]), str(item.get("output", "")), bool(item.get("isError"))
                )
            )
    return updates
