"""Params and results of every request (PROTOCOL.md sections 2 and 4)."""

from typing import Any, Literal

from pydantic import Field

from convmgr.protocol.base import ConversationId, HistoryItem, TextContent, WireModel

# --- lifecycle -------------------------------------------------------------


class ClientInfo(WireModel):
    """Who the client is."""

    name: str
    version: str | None = None


class InitializeParams(WireModel):
    """`initialize` params; every field is optional."""

    protocol_version: str | None = None
    client_info: ClientInfo | None = None
    capabilities: dict[str, Any] | None = None


class ServerInfo(WireModel):
    """Name and version of this server."""

    name: Literal["convmgr"] = "convmgr"
    version: str


class ProviderInfo(WireModel):
    """A model provider the server can use."""

    name: str
    kind: str
    default_model: str


class ServerCapabilities(WireModel):
    """What this server supports beyond the base protocol."""

    framings: list[str] = Field(default_factory=lambda: ["ndjson", "lsp"])
    batches: bool = True
    cancellation: list[str] = Field(
        default_factory=lambda: ["$/cancelRequest", "notifications/cancelled"]
    )
    persistent_store: bool = False


class InitializeResult(WireModel):
    """`initialize` result."""

    protocol_version: Literal["1"] = "1"
    server_info: ServerInfo
    capabilities: ServerCapabilities
    providers: list[ProviderInfo]


class EmptyResult(WireModel):
    """`{}`: the result of `ping` and `shutdown`."""


class CancelRequestParams(WireModel):
    """`$/cancelRequest` params (LSP)."""

    id: int | str


class CancelledNotificationParams(WireModel):
    """`notifications/cancelled` params (MCP)."""

    request_id: int | str
    reason: str | None = None


# --- conversations ---------------------------------------------------------


class ConversationSettingsParams(WireModel):
    """Settings a conversation is created with; also a fork's and a resume's overrides."""

    provider: str | None = None
    model: str | None = None
    instructions: str | None = None
    cwd: str | None = None
    metadata: dict[str, Any] | None = None
    ephemeral: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1)


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


class NewConversationResult(WireModel):
    """Result of `newConversation`, `forkConversation` and `resumeConversation`."""

    conversation_id: str
    session_configured: SessionConfigured


class GetConversationParams(WireModel):
    """`getConversation` params."""

    conversation_id: ConversationId
    include_history: bool = False
    history_offset: int = Field(default=0, ge=0)
    history_limit: int | None = Field(default=None, ge=0)


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
    """`getConversation` result; `history` only when asked for."""

    history: list[HistoryItem] | None = None


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
    drop_last_messages: int = Field(default=0, ge=0)
    overrides: NewConversationParams | None = None


class TurnOverrides(WireModel):
    """Per-turn settings."""

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1)


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
