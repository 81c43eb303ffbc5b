"""`conversation/event` notification types (PROTOCOL.md section 5)."""

from typing import Annotated, Any, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class TurnStarted(WireModel):
    """A turn began."""

    type: Literal["turnStarted"] = "turnStarted"


class AgentMessageDelta(WireModel):
    """A piece of the reply."""

    type: Literal["agentMessageDelta"] = "agentMessageDelta"
    delta: str


class ReasoningDelta(WireModel):
    """A piece of the model's reasoning."""

    type: Literal["reasoningDelta"] = "reasoningDelta"
    delta: str


class AgentMessage(WireModel):
    """The whole reply: the authoritative text of the turn."""

    type: Literal["agentMessage"] = "agentMessage"
    text: str


class TokenUsage(WireModel):
    """Token counts reported for the turn."""

    type: Literal["tokenUsage"] = "tokenUsage"
    input_tokens: int
    output_tokens: int
    total_tokens: int


class StreamError(WireModel):
    """The provider failed; the turn is retried from the start."""

    type: Literal["streamError"] = "streamError"
    message: str
    attempt: int
    retry_in_ms: int


class ToolCall(WireModel):
    """The model asked for a tool call (PROTOCOL section 9)."""

    type: Literal["toolCall"] = "toolCall"
    call_id: str
    name: str
    # The parsed JSON arguments, or the model's raw text when it is not a JSON object.
    arguments: Any
    source: Literal["client", "mcp"]
    server: str | None = None
    tool: str | None = None


class ToolResultText(WireModel):
    """A text block of a tool result."""

    type: Literal["text"] = "text"
    text: str


class ToolResult(WireModel):
    """A tool call's outcome, as sent back to the model."""

    type: Literal["toolResult"] = "toolResult"
    call_id: str
    content: list[ToolResultText]
    is_error: bool
    denied: bool | None = None


class ToolSourceFailed(WireModel):
    """An MCP server could not start or died: its tools are missing from this turn."""

    type: Literal["toolSourceFailed"] = "toolSourceFailed"
    server: str
    message: str


class TurnComplete(WireModel):
    """The turn ended normally."""

    type: Literal["turnComplete"] = "turnComplete"
    last_agent_message: str | None
    # stop; length: the output limit cut it; refusal: the provider refused or filtered it.
    finish_reason: Literal["stop", "length", "refusal"] = "stop"


class TurnAborted(WireModel):
    """The turn was stopped."""

    type: Literal["turnAborted"] = "turnAborted"
    reason: Literal["interrupted", "removed", "shutdown", "leaseLost"]


class TurnError(WireModel):
    """Why a turn failed."""

    message: str
    code: str | None = None


class TurnFailed(WireModel):
    """The turn ended with an error."""

    type: Literal["turnFailed"] = "turnFailed"
    error: TurnError


class ShutdownComplete(WireModel):
    """The last event of a removed or shut-down conversation."""

    type: Literal["shutdownComplete"] = "shutdownComplete"


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

    conversation_id: str
    seq: int = Field(ge=1)
    turn_id: str | None
    event: Event
