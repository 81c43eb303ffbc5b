"""JSON Schema export of every wire type (what the project's schemas/ holds)."""

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from convmgr.dialects.convmgr import events, lifecycle, methods, server_requests
from convmgr.dialects.convmgr.items import HistoryItem

# method -> (params model, result model); None: no params.
METHODS: dict[str, tuple[type[BaseModel] | None, type[BaseModel]]] = {
    "initialize": (lifecycle.InitializeParams, lifecycle.InitializeResult),
    "ping": (None, lifecycle.EmptyResult),
    "shutdown": (None, lifecycle.EmptyResult),
    "newConversation": (methods.NewConversationParams, methods.NewConversationResult),
    "getConversation": (methods.GetConversationParams, methods.GetConversationResult),
    "removeConversation": (methods.RemoveConversationParams, methods.RemoveConversationResult),
    "forkConversation": (methods.ForkConversationParams, methods.NewConversationResult),
    "sendUserTurn": (methods.SendUserTurnParams, methods.SendUserTurnResult),
    "interruptConversation": (
        methods.InterruptConversationParams,
        methods.InterruptConversationResult,
    ),
    "listConversations": (methods.ListConversationsParams, methods.ListConversationsResult),
    "resumeConversation": (methods.ResumeConversationParams, methods.NewConversationResult),
}

# Requests the server sends to the client.
SERVER_REQUESTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "tool/call": (server_requests.ToolCallParams, server_requests.ToolCallResult),
    "approval/request": (
        server_requests.ApprovalRequestParams,
        server_requests.ApprovalRequestResult,
    ),
}

NOTIFICATIONS: dict[str, type[BaseModel]] = {
    "conversation/event": events.ConversationEventParams,
    "$/cancelRequest": lifecycle.CancelRequestParams,
    "notifications/cancelled": lifecycle.CancelledNotificationParams,
}


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every params, result and notification type."""
    out: dict[str, dict[str, Any]] = {}
    for name, (params, result) in METHODS.items():
        if params is not None:
            out[f"{name}.params.json"] = params.model_json_schema(by_alias=True)
        out[f"{name}.result.json"] = result.model_json_schema(by_alias=True, mode="serialization")
    for name, (params, result) in SERVER_REQUESTS.items():
        file = name.replace("/", ".")
        out[f"{file}.params.json"] = params.model_json_schema(by_alias=True)
        out[f"{file}.result.json"] = result.model_json_schema(by_alias=True)
    for name, model in NOTIFICATIONS.items():
        file = name.removeprefix("$/").replace("/", ".")
        out[f"{file}.params.json"] = model.model_json_schema(by_alias=True)
    out["HistoryItem.json"] = TypeAdapter(HistoryItem).json_schema(by_alias=True)
    return out


def render(schema: dict[str, Any]) -> str:
    """Stable text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema into out_dir (created if needed); the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file, schema in sorted(all_schemas().items()):
        path = out_dir / file
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
