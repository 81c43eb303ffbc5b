"""History items and text content (PROTOCOL.md section 4, HistoryItem)."""

from typing import Annotated, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class TextContent(WireModel):
    """A piece of text input or message content."""

    type: Literal["text"] = "text"
    text: str


class MessageItem(WireModel):
    """A chat message in a conversation's history."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    content: list[TextContent]


class ReasoningItem(WireModel):
    """Reasoning text a model produced."""

    type: Literal["reasoning"] = "reasoning"
    text: str


class FunctionCallItem(WireModel):
    """A tool call the model made."""

    type: Literal["functionCall"] = "functionCall"
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(WireModel):
    """The output returned for a tool call."""

    type: Literal["functionCallOutput"] = "functionCallOutput"
    call_id: str
    output: str
    # Whether the call failed; absent in histories written before 1.1.
    is_error: bool | None = None


HistoryItem = Annotated[
    MessageItem | ReasoningItem | FunctionCallItem | FunctionCallOutputItem,
    Field(discriminator="type"),
]
