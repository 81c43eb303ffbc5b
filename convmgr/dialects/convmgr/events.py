"""`conversation/event` notification types (docs/protocol.md §6)."""

from typing import Annotated, Any, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class TurnStarted(WireModel):
    """A turn began: the first event of every turn."""

    type: Literal["turnStarted"] = Field(
        default="turnStarted", description='Always `"turnStarted"`.'
    )


class AgentMessageDelta(WireModel):
    """A piece of the reply text, as the model streams it."""

    type: Literal["agentMessageDelta"] = Field(
        default="agentMessageDelta", description='Always `"agentMessageDelta"`.'
    )
    delta: str = Field(
        description=(
            "The next piece of the current model call's text. Void if a `streamError` "
            "follows before the call's `agentMessage`."
        )
    )


class ReasoningDelta(WireModel):
    """A piece of the model's reasoning, from models that stream it."""

    type: Literal["reasoningDelta"] = Field(
        default="reasoningDelta", description='Always `"reasoningDelta"`.'
    )
    delta: str = Field(description="The next piece of the current model call's reasoning.")


class AgentMessage(WireModel):
    """The whole text of one model call: the authoritative reply text.

    A turn sends one at its end (the final reply, possibly empty) and, with tool
    rounds, one for each earlier model call that produced text.
    """

    type: Literal["agentMessage"] = Field(
        default="agentMessage", description='Always `"agentMessage"`.'
    )
    text: str = Field(
        description="The model call's text: its deltas joined (those voided by a retry left out)."
    )


class TokenUsage(WireModel):
    """Token counts of a completed turn, summed over its model calls (echo counts words)."""

    type: Literal["tokenUsage"] = Field(default="tokenUsage", description='Always `"tokenUsage"`.')
    input_tokens: int = Field(description="Prompt tokens, summed over the turn's model calls.")
    output_tokens: int = Field(description="Output tokens, summed over the turn's model calls.")
    total_tokens: int = Field(description="Total tokens as the provider counts them, summed.")


class StreamError(WireModel):
    """The provider failed; the current model call is retried from its start."""

    type: Literal["streamError"] = Field(
        default="streamError", description='Always `"streamError"`.'
    )
    message: str = Field(description="What went wrong (the provider's message, keys blanked out).")
    attempt: int = Field(description="Which retry this is: 1 for the first.")
    retry_in_ms: int = Field(description="How long the server waits before retrying, in ms.")


class ToolCall(WireModel):
    """The model asked for a tool call (1.1, docs/protocol.md section 14); its `toolResult`
    follows."""

    type: Literal["toolCall"] = Field(default="toolCall", description='Always `"toolCall"`.')
    call_id: str = Field(
        description="The call's id; its `toolResult`, `tool/call` and history items carry it."
    )
    name: str = Field(
        description="The tool's name as the model called it (`SERVER__TOOL` for an MCP tool)."
    )
    arguments: Any = Field(
        description=(
            "The arguments as a JSON object; the model's raw text (a string) when that is not "
            "a JSON object, in which case the call fails without running."
        )
    )
    source: Literal["client", "mcp"] = Field(
        description=(
            "Who runs it: `client` (a client tool, over `tool/call`; also a tool the "
            "conversation does not have) or `mcp` (a configured MCP server)."
        )
    )
    server: str | None = Field(
        default=None, description="For an MCP tool: the server's name (`[mcp_servers.NAME]`)."
    )
    tool: str | None = Field(
        default=None, description="For an MCP tool: the tool's own name at its server."
    )


class ToolResultText(WireModel):
    """A text block of a tool result."""

    type: Literal["text"] = Field(default="text", description='Always `"text"`.')
    text: str = Field(
        description=(
            "The result as the model got it: text blocks joined with newlines, other blocks "
            "as placeholders (`[image: MIME, N bytes]`, `[resource: URI]`)."
        )
    )


class ToolResult(WireModel):
    """A tool call's outcome, as sent back to the model."""

    type: Literal["toolResult"] = Field(default="toolResult", description='Always `"toolResult"`.')
    call_id: str = Field(description="The `callId` of the `toolCall` this ends.")
    content: list[ToolResultText] = Field(description="The output: one text block.")
    is_error: bool = Field(
        description=(
            "Whether the call failed: the tool's error, a timeout, a denial, an unknown tool, "
            "arguments that are not a JSON object, or an abort."
        )
    )
    denied: bool | None = Field(
        default=None, description="Present, and true, only when the call was denied approval."
    )


class ToolSourceFailed(WireModel):
    """An MCP server could not start or died: its tools are missing from this turn."""

    type: Literal["toolSourceFailed"] = Field(
        default="toolSourceFailed", description='Always `"toolSourceFailed"`.'
    )
    server: str = Field(description="The MCP server's name (`[mcp_servers.NAME]`).")
    message: str = Field(description="Why, for people (e.g. the exit status or a timeout).")


class TurnComplete(WireModel):
    """The turn ended normally (terminal)."""

    type: Literal["turnComplete"] = Field(
        default="turnComplete", description='Always `"turnComplete"`.'
    )
    last_agent_message: str | None = Field(
        description="The text of the turn's final model call: the reply (may be empty)."
    )
    finish_reason: Literal["stop", "length", "refusal"] = Field(
        default="stop",
        description=(
            "Why the final model call ended: `stop` (it was done), `length` (the output limit "
            "cut it) or `refusal` (the provider refused or filtered it)."
        ),
    )


class TurnAborted(WireModel):
    """The turn was stopped (terminal)."""

    type: Literal["turnAborted"] = Field(
        default="turnAborted", description='Always `"turnAborted"`.'
    )
    reason: Literal["interrupted", "removed", "shutdown", "leaseLost"] = Field(
        description=(
            "`interrupted` (`interruptConversation`), `removed` (`removeConversation`), "
            "`shutdown` (`shutdown`, `exit`, a signal, the drain timeout) or `leaseLost` "
            "(another process took the conversation over)."
        )
    )


class TurnError(WireModel):
    """Why a turn failed."""

    message: str = Field(description="What went wrong, for people (API keys blanked out).")
    code: str | None = Field(
        default=None,
        description=(
            "A short code to branch on, when there is one: `http_NNN` (the provider's HTTP "
            "status), `event_too_large`, `tool_rounds`, `store`, `commit_unknown`, ..."
        ),
    )


class TurnFailed(WireModel):
    """The turn ended with an error (terminal); its user message is kept."""

    type: Literal["turnFailed"] = Field(default="turnFailed", description='Always `"turnFailed"`.')
    error: TurnError = Field(description="What went wrong.")


class ShutdownComplete(WireModel):
    """The last event of a conversation in this process: removed, or the server ending."""

    type: Literal["shutdownComplete"] = Field(
        default="shutdownComplete", description='Always `"shutdownComplete"`.'
    )


Event = Annotated[
    TurnStarted
    | AgentMessageDelta
    | ReasoningDelta
    | AgentMessage
    | TokenUsage
    | StreamError
    | ToolCall
    | ToolResult
    | ToolSourceFailed
    | TurnComplete
    | TurnAborted
    | TurnFailed
    | ShutdownComplete,
    Field(discriminator="type"),
]


class ConversationEventParams(WireModel):
    """Params of the `conversation/event` notification."""

    conversation_id: str = Field(description="The conversation the event belongs to.")
    seq: int = Field(
        ge=1,
        description=(
            "1 for the conversation's first notification, then exactly 1 more each time "
            "(across turns, resumes and processes): a gap means a lost notification."
        ),
    )
    turn_id: str | None = Field(
        description="The turn's id (from `sendUserTurn`), or null outside a turn."
    )
    event: Event = Field(description="The event; `type` says which. Ignore types you do not know.")
