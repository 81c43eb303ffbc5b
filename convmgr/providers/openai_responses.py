"""The `openai-responses` provider: POST {base_url}/responses, streamed.

OpenAI's Responses API (and the servers that copy it, such as vLLM): typed
events such as `response.output_text.delta`, ending with `response.completed`.
"""

from typing import Any

from convmgr.model import Item
from convmgr.providers.base import (
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    TurnRequest,
    Usage,
)
from convmgr.providers.http import (
    OpenAICompatibleProvider,
    item_text,
    parse_json_event,
    raise_stream_error,
    usage_number,
)

# The events read; any other is skipped without parsing its JSON.
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_DELTAS = frozenset(
    {"response.reasoning_text.delta", "response.reasoning_summary_text.delta"}
)
_FINAL = frozenset({"response.completed", "response.incomplete"})
_WANTED = _TEXT_DELTAS | _REASONING_DELTAS | _FINAL | {"response.failed", "error"}


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
            "arguments": item.get("arguments"),
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


class ResponsesStreamParser:
    """Reads Responses API events up to `response.completed`."""

    def __init__(self) -> None:
        self.finished = False
        self._reasoning_seen = False
        self._summary_index: int | None = None

    @property
    def complete(self) -> bool:
        """Whether the final event was seen."""
        return self.finished

    def feed(self, event: str, data: str) -> list[ProviderEvent]:
        """The deltas and usage one event carries."""
        if data == "[DONE]":
            # Not part of the API, but some compatible servers end with it.
            self.finished = True
            return []
        if not data or (event != "message" and event not in _WANTED):
            # OpenAI names each event in the SSE `event:` field too ("message"
            # is the name of an unnamed one); those not needed are not parsed:
            # the `*.done` events repeat the whole text, several times over.
            return []
        payload = parse_json_event(data)
        kind = payload.get("type") or event
        if kind in _TEXT_DELTAS:
            delta = payload.get("delta")
            return [TextDelta(delta)] if isinstance(delta, str) and delta else []
        if kind in _REASONING_DELTAS:
            return self._reasoning(payload)
        if kind in _FINAL:
            self.finished = True
            response = payload.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                given = usage_number(usage, "input_tokens")
                taken = usage_number(usage, "output_tokens")
                total = usage_number(usage, "total_tokens") or given + taken
                return [Usage(input_tokens=given, output_tokens=taken, total_tokens=total)]
            return []
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
        return body

    def new_parser(self) -> ResponsesStreamParser:
        """A parser for one attempt."""
        return ResponsesStreamParser()
