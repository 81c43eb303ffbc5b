"""Params and results of the conversation methods (PROTOCOL.md section 4)."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import to_json

from convmgr.dialects.convmgr.base import MAX_INT, ConversationId, WireModel
from convmgr.dialects.convmgr.items import HistoryItem, TextContent

# --- conversations ---------------------------------------------------------


# PROTOCOL section 4's limits, as JSON text.
MAX_METADATA_BYTES = 64 << 10
MAX_INSTRUCTIONS_BYTES = 1 << 20


def _json_size_at_most(limit: int) -> AfterValidator:
    def check(value: Any) -> Any:
        if value is not None:
            size = len(to_json(value))
            if size > limit:
                raise ValueError(f"at most {limit} bytes as JSON text, got {size}")
        return value

    return AfterValidator(check)


TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class ToolDefinition(WireModel):
    """A client tool: the client runs it when the model calls it (PROTOCOL section 9)."""

    name: Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]
    description: str = ""
    # A JSON Schema object for the arguments.
    input_schema: dict[str, Any]


def _unique_names(tools: list[ToolDefinition] | None) -> list[ToolDefinition] | None:
    if tools is not None:
        seen: set[str] = set()
        for tool in tools:
            if tool.name in seen:
                raise ValueError(f"tool names must be unique: {tool.name!r} is given twice")
            seen.add(tool.name)
    return tools


class ConversationSettingsParams(WireModel):
    """Settings a conversation is created with; also a fork's and a resume's overrides."""

    provider: str | None = None
    model: str | None = None
    instructions: Annotated[str | None, _json_size_at_most(MAX_INSTRUCTIONS_BYTES)] = None
    cwd: str | None = None
    metadata: Annotated[dict[str, Any] | None, _json_size_at_most(MAX_METADATA_BYTES)] = None
    ephemeral: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    tools: Annotated[list[ToolDefinition] | None, AfterValidator(_unique_names)] = None
    mcp_servers: list[str] | None = None


class NewConversationParams(ConversationSettingsParams):
    """`newConversation` params."""

    conversation_id: ConversationId | None = None


class SessionConfigured(WireModel):
    """The first event of a conversation: its configuration."""

    conversation_id: str
    provider: str
    model: str
    instructions: str | None
    cwd: str | None
    created_at: str
    forked_from: str | None
    history_length: int
    # Present when the conversation has client tools or MCP servers.
    tools: list[ToolDefinition] | None = None
    mcp_servers: list[str] | None = None


class NewConversationResult(WireModel):
    """Result of `newConversation`, `forkConversation` and `resumeConversation`."""

    conversation_id: str
    session_configured: SessionConfigured


class GetConversationParams(WireModel):
    """`getConversation` params."""

    conversation_id: ConversationId
    include_history: bool = False
    history_offset: int = Field(default=0, ge=0, le=MAX_INT)
    history_limit: int | None = Field(default=None, ge=0, le=MAX_INT)


class ConversationInfo(WireModel):
    """What `getConversation` and `listConversations` say of a conversation."""

    conversation_id: str
    status: Literal["idle", "running"]
    loaded: bool
    provider: str
    model: str
    created_at: str
    updated_at: str
    forked_from: str | None
    history_length: int
    last_seq: int
    preview: str | None
    metadata: dict[str, Any] | None


class GetConversationResult(ConversationInfo):
    """`getConversation` result; `history` and `nextHistoryOffset` only when history is asked for.

    `nextHistoryOffset` is where the next page starts when this one was cut short
    (by `historyLimit` or to fit the response limit), null when it reached the end.
    """

    history: list[HistoryItem] | None = None
    next_history_offset: int | None = None


class RemoveConversationParams(WireModel):
    """`removeConversation` params."""

    conversation_id: ConversationId
    delete_history: bool = False


class RemoveConversationResult(WireModel):
    """`removeConversation` result."""

    removed: bool


class ForkConversationParams(WireModel):
    """`forkConversation` params: a source conversation or an explicit history."""

    conversation_id: ConversationId | None = None
    history: list[HistoryItem] | None = None
    drop_last_messages: int = Field(default=0, ge=0, le=MAX_INT)
    overrides: NewConversationParams | None = None


class TurnOverrides(WireModel):
    """Per-turn settings."""

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)


class SendUserTurnParams(WireModel):
    """`sendUserTurn` params."""

    conversation_id: ConversationId
    input: list[TextContent]
    overrides: TurnOverrides | None = None


class SendUserTurnResult(WireModel):
    """`sendUserTurn` result."""

    turn_id: str


class InterruptConversationParams(WireModel):
    """`interruptConversation` params."""

    conversation_id: ConversationId


class InterruptConversationResult(WireModel):
    """`interruptConversation` result."""

    interrupted: bool


class ListConversationsParams(WireModel):
    """`listConversations` params."""

    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=500)


class ListConversationsResult(WireModel):
    """`listConversations` result, newest first."""

    items: list[ConversationInfo]
    next_cursor: str | None


class ResumeConversationParams(WireModel):
    """`resumeConversation` params."""

    conversation_id: ConversationId
    overrides: ConversationSettingsParams | None = None
