"""The `openai-responses` provider: POST {base_url}/responses, streamed.

OpenAI's Responses API (and the servers that copy it, such as vLLM): typed
events such as `response.output_text.delta`, ending with `response.completed`.
"""

from collections.abc import Sequence
from typing import Any

from convmgr.model import Item
from convmgr.providers.base import (
    Finish,
    FunctionTool,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallRequest,
    TurnRequest,
    Usage,
)
from convmgr.providers.http import (
    OpenAICompatibleProvider,
    PendingCall,
    item_text,
    parse_json_event,
    raise_stream_error,
    sent_arguments,
    usage_number,
)

# The events read; any other is skipped without parsing its JSON.
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_DELTAS = frozenset(
    {"response.reasoning_text.delta", "response.reasoning_summary_text.delta"}
)
_FINAL = frozenset({"response.completed", "response.incomplete"})
_ITEM_ADDED = "response.output_item.added"
_ITEM_DONE = "response.output_item.done"
_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
_ARGUMENTS_DONE = "response.function_call_arguments.done"
# The output item events are parsed only when they may hold a function call:
# a message's `output_item.done` repeats its whole text.
_ITEM_EVENTS = frozenset({_ITEM_ADDED, _ITEM_DONE})
_WANTED = (
    _TEXT_DELTAS
    | _REASONING_DELTAS
    | _FINAL
    | _ITEM_EVENTS
    | {_ARGUMENTS_DELTA, _ARGUMENTS_DONE, "response.failed", "error"}
)
# In the JSON of an item event that is a function call (and seldom elsewhere:
# in a text it would be escaped, `\"function_call\"`).
_FUNCTION_CALL_MARK = '"function_call"'


def responses_input(request: TurnRequest) -> list[dict[str, Any]]:
    """The turn's history as Responses API input items."""
    items = [converted for item in request.history if (converted := _convert(item))]
    if not request.history:
        items.append({"type": "message", "role": "user", "content": request.input_text})
    return items


def _convert(item: Item) -> dict[str, Any] | None:
    """One history item as an input item, None for what the API cannot take back."""
    kind = item.get("type")
    if kind == "message" and item.get("role") in ("user", "assistant", "system"):
        return {"type": "message", "role": item["role"], "content": item_text(item)}
    if kind == "functionCall":
        return {
            "type": "function_call",
            "call_id": item.get("callId"),
            "name": item.get("name"),
            "arguments": sent_arguments(item.get("arguments")),
        }
    if kind == "functionCallOutput":
        return {
            "type": "function_call_output",
            "call_id": item.get("callId"),
            "output": item.get("output"),
        }
    # Reasoning items need the id (or encrypted content) the API gave them,
    # which the history does not keep: they are left out.
    return None


def responses_tools(tools: Sequence[FunctionTool]) -> list[dict[str, Any]]:
    """The functions offered to the model, as Responses API `tools`."""
    # strict: false, as Chat Completions has it by default: when it is left
    # out the Responses API rewrites the schema into strict mode, making every
    # optional parameter required, and refuses schemas strict mode cannot take
    # (client and MCP tools' schemas are seldom written for it).
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": False,
        }
        for tool in tools
    ]


class _ItemCall(PendingCall):
    """A function call item whose arguments are still arriving."""

    __slots__ = ("done", "item_id")

    def __init__(self) -> None:
        super().__init__()
        self.item_id = ""
        # Its arguments are whole (arguments.done or output_item.done).
        self.done = False

    def update(self, item: dict[str, Any]) -> None:
        """Take what a `function_call` item says (`output_item.added` or `.done`)."""
        # call_id is what the output must name; `id` (fc_...) is the item's own.
        call_id = item.get("call_id")
        if isinstance(call_id, str) and call_id and not self.call_id:
            self.call_id = call_id
        item_id = item.get("id")
        if isinstance(item_id, str) and item_id and not self.item_id:
            self.item_id = item_id
        name = item.get("name")
        if isinstance(name, str) and name and not self.name:
            self.name = name

    def take(self) -> ToolCallRequest:
        """The call as handed on; the item's id stands in for a call_id the server left out."""
        self.call_id = self.call_id or self.item_id
        return super().take()


class ResponsesStreamParser:
    """Reads Responses API events up to `response.completed`."""

    def __init__(self) -> None:
        self.finished = False
        self._refused = False
        self._reasoning_seen = False
        self._summary_index: int | None = None
        # Function calls by output_index: handed on in that order.
        self._calls: dict[int, _ItemCall] = {}

    @property
    def complete(self) -> bool:
        """Whether the final event was seen (a reply of calls only ends with it too)."""
        return self.finished

    def feed(self, event: str, data: str) -> list[ProviderEvent]:
        """The deltas, tool calls and usage one event carries."""
        if data == "[DONE]":
            # Not part of the API, but some compatible servers end with it.
            self.finished = True
            return self._calls_ready(final=True)
        if not data or (event != "message" and event not in _WANTED):
            # OpenAI names each event in the SSE `event:` field too ("message"
            # is the name of an unnamed one); those not needed are not parsed:
            # the `*.done` events repeat the whole text, several times over.
            return []
        if event in _ITEM_EVENTS and _FUNCTION_CALL_MARK not in data:
            return []
        payload = parse_json_event(data)
        kind = payload.get("type") or event
        if kind in _TEXT_DELTAS:
            delta = payload.get("delta")
            out: list[ProviderEvent] = []
            if isinstance(delta, str) and delta:
                out.append(TextDelta(delta))
            if kind == "response.refusal.delta" and not self._refused:
                self._refused = True
                out.append(Finish("refusal"))
            return out
        if kind in _REASONING_DELTAS:
            return self._reasoning(payload)
        if kind == _ARGUMENTS_DELTA:
            call = self._call_of(payload)
            delta = payload.get("delta")
            if call is not None and not call.done and isinstance(delta, str):
                call.arguments.append(delta)
            return []
        if kind == _ARGUMENTS_DONE:
            call = self._call_of(payload)
            arguments = payload.get("arguments")
            if call is not None and not call.done:
                if isinstance(arguments, str) and (arguments or not call.arguments):
                    # The whole text: it wins over the deltas.
                    call.arguments = [arguments]
                call.done = True
            return self._calls_ready()
        if kind in (_ITEM_ADDED, _ITEM_DONE):
            return self._item(payload, done=kind == _ITEM_DONE)
        if kind in _FINAL:
            self.finished = True
            response = payload.get("response")
            out = self._calls_ready(final=True, response=response)
            if kind == "response.incomplete" and isinstance(response, dict):
                details = response.get("incomplete_details")
                why = details.get("reason") if isinstance(details, dict) else None
                out.append(Finish("refusal" if why == "content_filter" else "length"))
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                given = usage_number(usage, "input_tokens")
                taken = usage_number(usage, "output_tokens")
                total = usage_number(usage, "total_tokens") or given + taken
                out.append(Usage(input_tokens=given, output_tokens=taken, total_tokens=total))
            return out
        if kind == "response.failed":
            response = payload.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise_stream_error(error)
        if kind == "error":
            raise_stream_error(payload.get("error", payload))
        return []

    def _reasoning(self, payload: dict[str, Any]) -> list[ProviderEvent]:
        """A reasoning delta; a new summary part is set off by a blank line."""
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        out: list[ProviderEvent] = []
        index = payload.get("summary_index")
        if isinstance(index, int):
            if self._reasoning_seen and index != self._summary_index:
                out.append(ReasoningDelta("\n\n"))
            self._summary_index = index
        self._reasoning_seen = True
        out.append(ReasoningDelta(delta))
        return out

    def _item(self, payload: dict[str, Any], done: bool) -> list[ProviderEvent]:
        """An `output_item.added` or `.done` event: a function call starts or is whole."""
        item = payload.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        index = payload.get("output_index")
        if not isinstance(index, int) or isinstance(index, bool):
            # Without a position it goes after the calls known so far.
            index = max(self._calls, default=-1) + 1
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _ItemCall()
        if call.done:
            return []
        call.update(item)
        arguments = item.get("arguments")
        if done:
            if isinstance(arguments, str) and (arguments or not call.arguments):
                # The whole text: it wins over the deltas.
                call.arguments = [arguments]
            call.done = True
            return self._calls_ready()
        if isinstance(arguments, str) and arguments:
            call.arguments.append(arguments)
        return []

    def _call_of(self, payload: dict[str, Any]) -> _ItemCall | None:
        """The call an arguments event is about: by output_index, else by item_id."""
        index = payload.get("output_index")
        if isinstance(index, int) and index in self._calls:
            return self._calls[index]
        item_id = payload.get("item_id")
        for call in self._calls.values():
            if item_id and call.item_id == item_id:
                return call
        return None

    def _calls_ready(self, final: bool = False, response: object = None) -> list[ProviderEvent]:
        """The calls that can be handed on, in output order, each once.

        Before the end, a whole call waits for the calls before it. At the
        end every call goes, as far as its arguments came, with the calls of
        the final response's `output` that no event announced.
        """
        if final and isinstance(response, dict):
            self._add_final_output(response.get("output"))
        out: list[ProviderEvent] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.sent:
                continue
            if not (call.done or final):
                break
            out.append(call.take())
        return out

    def _add_final_output(self, output: object) -> None:
        """Calls in the final response that the stream did not announce (some servers)."""
        if not isinstance(output, list):
            return
        known = {call.call_id for call in self._calls.values()} | {
            call.item_id for call in self._calls.values()
        }
        for index, item in enumerate(output):
            if not isinstance(item, dict) or item.get("type") != "function_call":
                continue
            if item.get("call_id") in known or item.get("id") in known:
                continue
            call = _ItemCall()
            call.update(item)
            arguments = item.get("arguments")
            if isinstance(arguments, str):
                call.arguments = [arguments]
            call.done = True
            # Its position in the output, unless that one is taken.
            slot = index if index not in self._calls else max(self._calls) + 1
            self._calls[slot] = call


class OpenAIResponsesProvider(OpenAICompatibleProvider):
    """A Responses API server."""

    kind = "openai-responses"
    path = "/responses"

    def build_body(self, request: TurnRequest) -> dict[str, Any]:
        """The streamed response request for one turn."""
        body: dict[str, Any] = {
            "model": request.model,
            "input": responses_input(request),
            "stream": True,
            # convmgr keeps the history itself; nothing needs to stay upstream.
            "store": False,
        }
        if request.instructions:
            body["instructions"] = request.instructions
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            body["max_output_tokens"] = request.max_output_tokens
        if request.tools:
            body["tools"] = responses_tools(request.tools)
        return body

    def new_parser(self) -> ResponsesStreamParser:
        """A parser for one attempt."""
        return ResponsesStreamParser()
