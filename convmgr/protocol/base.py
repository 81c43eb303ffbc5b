"""Shared model configuration and small wire types."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Schemas are built on first use, not at import: start-up time matters (an
# editor pays it on every spawn) and most runs touch only a few models.
WIRE_CONFIG = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    defer_build=True,
    extra="ignore",
)


class WireModel(BaseModel):
    """Base of every wire type: camelCase on the wire, unknown fields ignored."""

    model_config = WIRE_CONFIG


ConversationId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"),
]


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


HistoryItem = Annotated[
    MessageItem | ReasoningItem | FunctionCallItem | FunctionCallOutputItem,
    Field(discriminator="type"),
]
