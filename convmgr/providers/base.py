"""The interface every model provider implements, and what its streams yield."""

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from convmgr.model import Item


@dataclass(slots=True, frozen=True)
class TurnRequest:
    """What a provider needs to produce one reply."""

    model: str
    instructions: str | None
    # Every item before this turn followed by this turn's user message. Empty
    # when the provider declares needs_history False (only `input_text` is set).
    history: Sequence[Item]
    input_text: str
    temperature: float | None = None
    max_output_tokens: int | None = None
    # The functions the model may call (empty: send no tools at all).
    tools: Sequence["FunctionTool"] = ()
    # This turn's calls and outputs so far, after its user message (also at the
    # end of `history` when that is loaded): what a tool round adds.
    turn_items: Sequence[Item] = ()
    # The turn's number in the conversation, from 1 (echo's call ids use it).
    turn_number: int = 1
    # Whether the conversation has tool sources, even if none offers a tool this
    # turn (an MCP server that failed to start): echo makes calls only then.
    has_tools: bool = False


@dataclass(slots=True, frozen=True)
class FunctionTool:
    """A function offered to the model."""

    name: str
    description: str
    # A JSON Schema object for the arguments.
    parameters: dict[str, Any]


@dataclass(slots=True, frozen=True)
class TextDelta:
    """A piece of the reply."""

    text: str


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning."""

    text: str


@dataclass(slots=True, frozen=True)
class Usage:
    """Token counts for the turn (the last one yielded wins)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(slots=True, frozen=True)
class Retrying:
    """The attempt failed and the provider starts over: what was streamed is void."""

    message: str
    attempt: int
    retry_in_ms: int


@dataclass(slots=True, frozen=True)
class ToolCallRequest:
    """A whole function call the model asked for (yielded once its arguments are complete).

    `arguments` is the model's raw text; it may not be valid JSON. A Retrying
    after it voids it like the deltas.
    """

    call_id: str
    name: str
    arguments: str


@dataclass(slots=True, frozen=True)
class Finish:
    """Why the model call ended, when not simply `stop`: `length` or `refusal`."""

    reason: str


ProviderEvent = TextDelta | ReasoningDelta | Usage | Retrying | ToolCallRequest | Finish


class ProviderError(Exception):
    """The turn cannot be completed; the message is safe to show (no secrets)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Provider(Protocol):
    """A model the manager can run turns against."""

    @property
    def name(self) -> str:
        """The provider's configured name."""
        ...

    @property
    def kind(self) -> str:
        """`echo`, `openai-chat` or `openai-responses`."""
        ...

    @property
    def default_model(self) -> str:
        """The model used when a conversation names none."""
        ...

    @property
    def context_window(self) -> int | None:
        """The model's context window in tokens, when known."""
        ...

    @property
    def needs_history(self) -> bool:
        """Whether stream() reads TurnRequest.history (it is loaded from the store if so)."""
        ...

    def stream(self, request: TurnRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Stream one reply; raise ProviderError when it cannot be had.

        Cancellation (interrupt, remove, shutdown) arrives as anyio cancellation
        and must close any network stream promptly.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
