"""Params and results of the conversation methods (docs/protocol.md §§4-5)."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import to_json

from convmgr.dialects.convmgr.base import MAX_INT, ConversationId, WireModel
from convmgr.dialects.convmgr.items import HistoryItem, TextContent

# --- conversations ---------------------------------------------------------


# docs/protocol.md §9's limits, as JSON text.
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
    """A client tool: the client runs it when the model calls it (docs/protocol.md section 14)."""

    name: Annotated[
        str,
        Field(
            pattern=TOOL_NAME_PATTERN,
            description=(
                "The name the model calls the tool by: 1 to 64 of `A-Z a-z 0-9 _ -`, unique "
                "in the list. It wins over an MCP tool of the same name."
            ),
        ),
    ]
    description: str = Field(
        default="", description="What the tool does, for the model. Default: empty."
    )
    input_schema: dict[str, Any] = Field(
        description=(
            'A JSON Schema object for the arguments (e.g. `{"type": "object", "properties": '
            "{...}}`), passed to the model as given."
        )
    )


def _unique_names(tools: list[ToolDefinition] | None) -> list[ToolDefinition] | None:
    if tools is not None:
        seen: set[str] = set()
        for tool in tools:
            if tool.name in seen:
                raise ValueError(f"tool names must be unique: {tool.name!r} is given twice")
            seen.add(tool.name)
    return tools


class ConversationSettingsParams(WireModel):
    """Settings a conversation is created with; also a fork's and a resume's overrides.

    Every field is optional. In `overrides`, a field that is absent or null keeps
    the source conversation's value.
    """

    provider: str | None = Field(
        default=None,
        description=(
            "A provider name from `initialize`'s `providers`. Default: the configuration "
            "file's `default_provider`, else `echo`. An unknown name is -32602."
        ),
    )
    model: str | None = Field(
        default=None, description="The model to use. Default: the provider's `defaultModel`."
    )
    instructions: Annotated[
        str | None,
        _json_size_at_most(MAX_INSTRUCTIONS_BYTES),
        Field(
            description=(
                "The system prompt sent with every model call. At most 1 MiB as JSON text. "
                "Default: none."
            )
        ),
    ] = None
    cwd: str | None = Field(
        default=None,
        description=(
            "A working directory to keep with the conversation; shown back in "
            "`sessionConfigured`, not used by the providers. Default: none."
        ),
    )
    metadata: Annotated[
        dict[str, Any] | None,
        _json_size_at_most(MAX_METADATA_BYTES),
        Field(
            description=(
                "Any JSON object the client wants kept with the conversation (at most 64 KiB "
                "as JSON text); returned by `getConversation` and `listConversations`."
            )
        ),
    ] = None
    ephemeral: bool | None = Field(
        default=None,
        description=(
            "True: never written to the store, not listed, gone once removed. Default: false."
        ),
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description=(
            "Sampling temperature, 0 to 2, sent to HTTP providers (echo ignores it). "
            "Default: the provider's own."
        ),
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description=(
            "The most tokens one model call may produce, sent to HTTP providers (echo ignores "
            "it); a reply it cuts ends with `finishReason` `length`. Default: the provider's."
        ),
    )
    tools: Annotated[
        list[ToolDefinition] | None,
        AfterValidator(_unique_names),
        Field(
            description=(
                "1.1: client tools, which the client runs when the server sends `tool/call`. "
                "Names must be unique. In `overrides` the list replaces the source's (an empty "
                "list removes them). Default: none."
            )
        ),
    ] = None
    mcp_servers: list[str] | None = Field(
        default=None,
        description=(
            "1.1: the names of the configured MCP servers (`[mcp_servers.NAME]`) whose tools "
            "the conversation may use; an empty list: none. Default: all configured ones. "
            "An unknown name is -32602."
        ),
    )


class NewConversationParams(ConversationSettingsParams):
    """`newConversation` params: the settings, and the new conversation's id."""

    conversation_id: ConversationId | None = Field(
        default=None,
        description=(
            "The id to create: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.`; "
            "taken is -32003. Default: the server makes a UUID."
        ),
    )


class SessionConfigured(WireModel):
    """A conversation's configuration: its first event, carried by the response that creates it."""

    conversation_id: str = Field(description="The conversation's id.")
    provider: str = Field(description="The provider the conversation uses (resolved).")
    model: str = Field(description="The model the conversation uses (resolved).")
    instructions: str | None = Field(description="The system prompt, or null.")
    cwd: str | None = Field(description="The working directory given, or null.")
    created_at: str = Field(
        description=(
            "When the conversation was created: ISO 8601 UTC with microseconds, "
            "e.g. `2026-12-01T16:39:53.027568Z` (sorts as text)."
        )
    )
    forked_from: str | None = Field(
        description=(
            "The id of the conversation this one was forked from; null otherwise (also for "
            "a fork of a given history)."
        )
    )
    history_length: int = Field(description="How many history items the conversation has now.")
    tools: list[ToolDefinition] | None = Field(
        default=None,
        description="1.1: the conversation's client tools; present only when it has some.",
    )
    mcp_servers: list[str] | None = Field(
        default=None,
        description=(
            "1.1: the MCP servers the conversation chose; present only when it chose "
            "(absent: all configured servers)."
        ),
    )


class NewConversationResult(WireModel):
    """Result of `newConversation`, `forkConversation` and `resumeConversation`."""

    conversation_id: str = Field(description="The conversation's id (made or given).")
    session_configured: SessionConfigured = Field(
        description="The conversation's configuration (there is no separate event for it)."
    )


class GetConversationParams(WireModel):
    """`getConversation` params."""

    conversation_id: ConversationId = Field(
        description="A conversation loaded here or stored; neither is -32001."
    )
    include_history: bool = Field(
        default=False,
        description="True: add a page of the history (`history`, `nextHistoryOffset`).",
    )
    history_offset: int = Field(
        default=0,
        ge=0,
        le=MAX_INT,
        description="The index of the page's first item (0 is the oldest). Default: 0.",
    )
    history_limit: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT,
        description=(
            "The most items in the page. Default: as many as fit in `--max-message-bytes`; "
            "a page may be shorter than asked, so page with `nextHistoryOffset`."
        ),
    )


class ConversationInfo(WireModel):
    """What `getConversation` and `listConversations` say of a conversation."""

    conversation_id: str = Field(description="The conversation's id.")
    status: Literal["idle", "running"] = Field(
        description="`running` while a turn of it runs in this process, else `idle`."
    )
    loaded: bool = Field(
        description=(
            "Whether this process has the conversation loaded (false when it is only stored, "
            "or loaded by another process sharing the store)."
        )
    )
    provider: str = Field(description="The provider it uses.")
    model: str = Field(description="The model it uses.")
    created_at: str = Field(description="When it was created (ISO 8601 UTC, microseconds).")
    updated_at: str = Field(
        description="When a turn of it was last stored (ISO 8601 UTC); at first `createdAt`."
    )
    forked_from: str | None = Field(description="The id it was forked from, or null.")
    history_length: int = Field(description="How many history items are stored.")
    last_seq: int = Field(
        description=(
            "The `seq` of its last `conversation/event` (0 before the first); a resumed "
            "conversation's events go on from it."
        )
    )
    preview: str | None = Field(
        description="Its first user message, cut to 200 characters; null before there is one."
    )
    metadata: dict[str, Any] | None = Field(description="The `metadata` setting, or null.")


class GetConversationResult(ConversationInfo):
    """`getConversation` result; `history` and `nextHistoryOffset` only when history is asked for.

    `nextHistoryOffset` is where the next page starts when this one was cut short
    (by `historyLimit` or to fit the response limit), null when it reached the end.
    """

    history: list[HistoryItem] | None = Field(
        default=None,
        description=(
            "With `includeHistory`: the page of items from `historyOffset`, oldest first. "
            "A running turn's items are not there until it ends."
        ),
    )
    next_history_offset: int | None = Field(
        default=None,
        description=(
            "With `includeHistory`: the `historyOffset` of the next page, or null when this "
            "page reached the end of the history."
        ),
    )


class RemoveConversationParams(WireModel):
    """`removeConversation` params."""

    conversation_id: ConversationId = Field(
        description="The conversation to unload (its running turn is aborted)."
    )
    delete_history: bool = Field(
        default=False,
        description=(
            "True: delete the stored history too (the id is then unknown). Default: false, "
            "the conversation stays resumable."
        ),
    )


class RemoveConversationResult(WireModel):
    """`removeConversation` result."""

    removed: bool = Field(
        description="False when the id was neither loaded nor stored (not an error)."
    )


class ForkConversationParams(WireModel):
    """`forkConversation` params: a source conversation or an explicit history (exactly one)."""

    conversation_id: ConversationId | None = Field(
        default=None,
        description=(
            "The conversation to fork (loaded or stored); its completed turns are copied. "
            "Give this or `history`."
        ),
    )
    history: list[HistoryItem] | None = Field(
        default=None,
        description="A history to start the fork from, instead of `conversationId`.",
    )
    drop_last_messages: int = Field(
        default=0,
        ge=0,
        le=MAX_INT,
        description=(
            "Drop the last N user messages and everything after each of them. Default: 0, "
            "keep the whole history; more than there are leaves it empty."
        ),
    )
    overrides: NewConversationParams | None = Field(
        default=None,
        description=(
            "The fork's id (`conversationId`, default a UUID) and the settings it changes; "
            "the others are the source's."
        ),
    )


class TurnOverrides(WireModel):
    """Settings for one turn only."""

    model: str | None = Field(default=None, description="The model for this turn.")
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="The sampling temperature for this turn, 0 to 2."
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description="The output-token limit of each model call of this turn.",
    )


class SendUserTurnParams(WireModel):
    """`sendUserTurn` params."""

    conversation_id: ConversationId = Field(
        description=(
            "A loaded conversation (a stored one is -32001: resume it first); one with a "
            "running turn is -32002."
        )
    )
    input: list[TextContent] = Field(
        description="The user's message; several items are joined with a newline."
    )
    overrides: TurnOverrides | None = Field(
        default=None, description="Settings for this turn only."
    )


class SendUserTurnResult(WireModel):
    """`sendUserTurn` result, written before the turn's first event."""

    turn_id: str = Field(description="The turn's id (a UUID), the `turnId` of the turn's events.")


class InterruptConversationParams(WireModel):
    """`interruptConversation` params."""

    conversation_id: ConversationId = Field(description="The conversation whose turn to stop.")


class InterruptConversationResult(WireModel):
    """`interruptConversation` result."""

    interrupted: bool = Field(
        description=(
            "True: the running turn will end `turnAborted` (reason `interrupted`). False: no "
            "turn was running, or its outcome was already settled."
        )
    )


class ListConversationsParams(WireModel):
    """`listConversations` params."""

    cursor: str | None = Field(
        default=None,
        description=(
            "The `nextCursor` of the previous page (opaque); absent for the first page. "
            "A cursor the server did not make is -32602."
        ),
    )
    limit: int = Field(
        default=50, ge=1, le=500, description="The most items in the page, 1 to 500. Default: 50."
    )


class ListConversationsResult(WireModel):
    """`listConversations` result, most recently updated first (ephemeral ones are not listed)."""

    items: list[ConversationInfo] = Field(
        description="The page; it may hold fewer than `limit` to fit `--max-message-bytes`."
    )
    next_cursor: str | None = Field(
        description="The `cursor` for the next page, or null after the last page."
    )


class ResumeConversationParams(WireModel):
    """`resumeConversation` params."""

    conversation_id: ConversationId = Field(
        description=(
            "A stored conversation to load under its own id; one this process has loaded "
            "is answered as it is, one another process has loaded is -32004."
        )
    )
    overrides: ConversationSettingsParams | None = Field(
        default=None,
        description="Settings to change from now on; the others stay as stored.",
    )
