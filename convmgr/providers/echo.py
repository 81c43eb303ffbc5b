"""The built-in `echo` provider: an offline, deterministic model.

It echoes the turn's input. In a conversation with tools it also calls them
(docs/protocol.md §14): `/call NAME {json}` lines of the input ask for calls,
and the next model call echoes their outputs (or makes the calls that those
outputs' own `/call` lines ask for).
"""

import re
from collections.abc import AsyncGenerator, Iterable

from anyio.lowlevel import checkpoint

from convmgr.model import Item
from convmgr.providers.base import (
    ProviderEvent,
    TextDelta,
    ToolCallRequest,
    TurnRequest,
    Usage,
)

# A word with the white space after it; the first match also takes any leading
# white space, and white-space-only input is one match, so the deltas always
# concatenate to exactly the input.
_WORD = re.compile(r"\s*\S+\s*|\s+")
_WORDS_PER_CHECKPOINT = 32
_CALL = re.compile(r"^\s*/call\s+([A-Za-z0-9_.-]+)(?:\s+(.*?))?\s*$")


class EchoProvider:
    """Replies with the turn's input, one delta per word; calls tools when it has some."""

    name = "echo"
    kind = "echo"
    default_model = "echo"
    needs_history = False
    context_window: int | None = None

    async def stream(self, request: TurnRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the reply word by word, then any calls, giving the loop a turn every few words."""
        text, calls = request.input_text, list[ToolCallRequest]()
        if request.has_tools:
            text, calls = _reply(request)
        count = 0
        for match in _WORD.finditer(text):
            # Giving the loop a turn every few words lets an interrupt land within
            # well under a millisecond, without paying a loop pass per delta.
            if count % _WORDS_PER_CHECKPOINT == 0:
                await checkpoint()
            count += 1
            yield TextDelta(match.group())
        for call in calls:
            yield call
        yield Usage(input_tokens=count, output_tokens=count, total_tokens=2 * count)

    async def aclose(self) -> None:
        """Nothing to release."""


def _reply(request: TurnRequest) -> tuple[str, list[ToolCallRequest]]:
    """The text and calls of one model call in a conversation with tools."""
    made = sum(1 for item in request.turn_items if item.get("type") == "functionCall")
    outputs = _last_outputs(request.turn_items)
    if not request.turn_items:
        text, calls = _calls_in(request.input_text.split("\n"))
    else:
        lines = [line for output in outputs for line in output.split("\n")]
        _, calls = _calls_in(lines)
        text = "" if calls else "\n".join(outputs)
    return text, [
        ToolCallRequest(f"call_{request.turn_number}_{made + n}", name, arguments)
        for n, (name, arguments) in enumerate(calls, start=1)
    ]


def _calls_in(lines: Iterable[str]) -> tuple[str, list[tuple[str, str]]]:
    """The lines that are not calls (joined), and the calls as (name, raw arguments)."""
    kept: list[str] = []
    calls: list[tuple[str, str]] = []
    for line in lines:
        match = _CALL.match(line)
        if match is None:
            kept.append(line)
        else:
            calls.append((match.group(1), match.group(2) or "{}"))
    return "\n".join(kept), calls


def _last_outputs(items: Iterable[Item]) -> list[str]:
    """The outputs of the last round of calls, in call order."""
    outputs: list[str] = []
    for item in items:
        if item.get("type") == "functionCallOutput":
            outputs.append(str(item.get("output", "")))
        elif outputs:
            outputs = []  # a later round began
    return outputs
