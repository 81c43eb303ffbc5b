"""History items and text content (docs/protocol.md §4, History items)."""

from typing import Annotated, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class TextContent(WireModel):
    """A piece of text: a `sendUserTurn` input item, or a part of a message's content."""

    type: Literal["text"] = Field(default="text", description='Always `"text"`.')
    text: str = Field(description="The text (may be empty; may hold newlines).")


class MessageItem(WireModel):
    """A chat message in a conversation's history."""

    type: Literal["message"] = Field(default="message", description='Always `"message"`.')
    role: Literal["user", "assistant", "system"] = Field(
        description=(
            "Who said it: `user` (a `sendUserTurn` input), `assistant` (a model reply) "
            "or `system`. `forkConversation`'s `dropLastMessages` counts only `user` messages."
        )
    )
    content: list[TextContent] = Field(
        description=(
            "The message's text parts. convmgr writes one part: a turn's input items "
            "joined with a newline, or one model call's whole reply."
        )
    )


class ReasoningItem(WireModel):
    """Reasoning text a model produced (never sent back to a model)."""

    type: Literal["reasoning"] = Field(default="reasoning", description='Always `"reasoning"`.')
    text: str = Field(description="One model call's reasoning: its `reasoningDelta`s joined.")


class FunctionCallItem(WireModel):
    """A tool call the model asked for (1.1); its output follows as a `functionCallOutput`."""

    type: Literal["functionCall"] = Field(
        default="functionCall", description='Always `"functionCall"`.'
    )
    call_id: str = Field(
        description=(
            "The call's id, the same as in its `toolCall` event and its `functionCallOutput` "
            "(`call_T_N` from `echo`; a provider's own id otherwise)."
        )
    )
    name: str = Field(
        description="The tool's name as the model saw it (`SERVER__TOOL` for an MCP tool)."
    )
    arguments: str = Field(
        description=(
            "The model's arguments exactly as it wrote them: JSON text in a string, not parsed "
            "(it may not be valid JSON, in which case the call failed without running)."
        )
    )


class FunctionCallOutputItem(WireModel):
    """The output a tool call gave the model (1.1)."""

    type: Literal["functionCallOutput"] = Field(
        default="functionCallOutput", description='Always `"functionCallOutput"`.'
    )
    call_id: str = Field(description="The `callId` of the `functionCall` this answers.")
    output: str = Field(
        description=(
            "The text the model got: the tool result's text, the error's text for a failed "
            'or denied call, or `"aborted"` for a call cut short by an aborted turn.'
        )
    )
    is_error: bool | None = Field(
        default=None,
        description=(
            "Whether the call failed (an error, a denial, an abort). Absent in histories "
            "written before 1.1, and optional in a `forkConversation` history."
        ),
    )


HistoryItem = Annotated[
    MessageItem | ReasoningItem | FunctionCallItem | FunctionCallOutputItem,
    Field(
        discriminator="type",
        title="HistoryItem",
        description=(
            "One item of a conversation's history; `type` says which: `message`, `reasoning`, "
            "`functionCall` or `functionCallOutput` (1.1). Ignore types you do not know."
        ),
    ),
]
