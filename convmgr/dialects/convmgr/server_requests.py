"""Requests convmgr sends to its client, and their answers (PROTOCOL section 9)."""

from typing import Any, Literal

from convmgr.dialects.convmgr.base import WireModel


class ToolCallParams(WireModel):
    """`tool/call` params: run one of the client's tools."""

    conversation_id: str
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any]


class TextBlock(WireModel):
    """A text block of a tool result."""

    type: Literal["text"] = "text"
    text: str


class ToolCallResult(WireModel):
    """`tool/call` answer: MCP's CallToolResult shape (other block types are taken too)."""

    content: list[TextBlock]
    is_error: bool = False
    structured_content: dict[str, Any] | None = None


class ApprovalRequestParams(WireModel):
    """`approval/request` params: may this call run?"""

    conversation_id: str
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any]
    source: Literal["client", "mcp"]
    server: str | None = None


class ApprovalRequestResult(WireModel):
    """`approval/request` answer; `allowAlways` holds for the tool in the conversation."""

    decision: Literal["allow", "allowAlways", "deny"]
