"""What the core tells a conversation's client: typed events, and the sink they go to.

The core never builds wire messages; each dialect translates these events in
one place (the convmgr dialect into `conversation/event` notifications).
"""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

AbortReason = Literal["interrupted", "removed", "shutdown", "leaseLost"]


@dataclass(slots=True)
class TurnStarted:
    """A turn began."""


@dataclass(slots=True)
class AgentMessageDelta:
    """A piece of the reply."""

    delta: str


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning."""

    delta: str


@dataclass(slots=True)
class AgentMessage:
    """The whole text of one model call: the authoritative reply."""

    text: str


@dataclass(slots=True)
class TokenUsage:
    """Token counts the provider reported for the turn."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    # The last model call's total: what the conversation holds in the model's context now.
    context_tokens: int | None = None


@dataclass(slots=True)
class StreamError:
    """The provider failed and the model call starts over: its deltas so far are void."""

    message: str
    attempt: int
    retry_in_ms: int


@dataclass(slots=True)
class ToolCall:
    """The model asked for a call; `arguments` is the parsed JSON, or the raw text if unparsable."""

    call_id: str
    name: str
    arguments: Any
    source: Literal["client", "mcp"]
    server: str | None = None
    tool: str | None = None


@dataclass(slots=True)
class ToolCallStarted:
    """A call starts running (after any approval).

    It takes no seq number (Conversation.note): a dialect without such a
    notification drops it, and its wire stays as it was.
    """

    call_id: str


@dataclass(slots=True)
class ToolResult:
    """A call's outcome, as the model gets it."""

    call_id: str
    text: str
    is_error: bool
    denied: bool = False


@dataclass(slots=True)
class ToolSourceFailed:
    """An MCP server could not start or died: its tools are missing from this turn."""

    server: str
    message: str


@dataclass(slots=True)
class TurnComplete:
    """The turn ended normally; finish_reason: stop, length or refusal."""

    last_agent_message: str
    finish_reason: str = "stop"


@dataclass(slots=True)
class TurnAborted:
    """The turn was stopped."""

    reason: AbortReason


@dataclass(slots=True)
class TurnFailed:
    """The turn ended with an error."""

    message: str
    code: str | None = None


@dataclass(slots=True)
class ShutdownComplete:
    """The last event of a removed or shut-down conversation."""


Event = (
    TurnStarted
    | AgentMessageDelta
    | ReasoningDelta
    | AgentMessage
    | TokenUsage
    | StreamError
    | ToolCall
    | ToolCallStarted
    | ToolResult
    | ToolSourceFailed
    | TurnComplete
    | TurnAborted
    | TurnFailed
    | ShutdownComplete
)

TERMINAL = (TurnComplete, TurnAborted, TurnFailed)


class EventSink(Protocol):
    """Where the manager sends conversation events (a dialect writes them out)."""

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: Event) -> None:
        """Queue one event for the client, in order."""
        ...

    def congested(self) -> bool:
        """Whether the client is behind (then wait_ready() before emitting more)."""
        ...

    async def wait_ready(self) -> None:
        """Return when the client keeps up: backpressure for streaming turns."""
        ...
