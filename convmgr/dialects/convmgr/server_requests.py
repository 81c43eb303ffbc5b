"""Requests convmgr sends to its client, and their answers (docs/protocol.md §14)."""

from typing import Any, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class ToolCallParams(WireModel):
    """`tool/call` params: run one of the client's tools and answer with its result."""

    conversation_id: str = Field(description="The conversation whose turn made the call.")
    turn_id: str = Field(description="The turn that made the call.")
    call_id: str = Field(description="The call's id, as in the `toolCall` event.")
    name: str = Field(description="The client tool to run (a `tools` entry's `name`).")
    arguments: dict[str, Any] = Field(description="The arguments the model gave (a JSON object).")


class TextBlock(WireModel):
    """A text block of a tool result."""

    type: Literal["text"] = Field(default="text", description='Always `"text"`.')
    text: str = Field(description="Text for the model.")


class ToolCallResult(WireModel):
    """`tool/call` answer: MCP's CallToolResult shape (other block types are taken too)."""

    content: list[TextBlock] = Field(
        description=(
            "The result for the model; text blocks are joined with newlines (an image, audio "
            "or resource block becomes a placeholder or its text)."
        )
    )
    is_error: bool = Field(
        default=False, description="True when the tool failed; the model is told so."
    )
    structured_content: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A JSON result; the model gets its JSON text when `content` has no text block."
        ),
    )


class ApprovalRequestParams(WireModel):
    """`approval/request` params: may this call run?

    Sent only to a client that declared `capabilities.approvals: true`.
    """

    conversation_id: str = Field(description="The conversation whose turn made the call.")
    turn_id: str = Field(description="The turn that made the call.")
    call_id: str = Field(description="The call's id, as in the `toolCall` event.")
    name: str = Field(description="The tool's name as the model called it (`SERVER__TOOL`).")
    arguments: dict[str, Any] = Field(description="The arguments the call would run with.")
    source: Literal["client", "mcp"] = Field(
        description='Who would run it: `mcp` (today only MCP servers with `approval = "ask"` ask).'
    )
    server: str | None = Field(
        default=None, description="For an MCP tool: the server's name (`[mcp_servers.NAME]`)."
    )


class ApprovalRequestResult(WireModel):
    """`approval/request` answer; `allowAlways` holds for the tool in the conversation."""

    decision: Literal["allow", "allowAlways", "deny"] = Field(
        description=(
            "`allow`: run this call; `allowAlways`: run it and every later call of this tool "
            "in this conversation, until the process ends; `deny`: do not run it (the model "
            "is told it was denied). An error answer is a denial."
        )
    )
