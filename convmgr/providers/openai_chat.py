"""The `openai-chat` provider: POST {base_url}/chat/completions, streamed.

The API of OpenAI's Chat Completions, and of most servers that copy it: Ollama,
vLLM, llama.cpp's server, LM Studio.
"""

import json
from collections.abc import Sequence
from typing import Any

from convmgr.model import Item
from convmgr.providers.base import (
    Finish,
    FunctionTool,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
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


def chat_messages(request: TurnRequest) -> list[dict[str, Any]]:
    """The turn's instructions and history as Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in request.history:
        _append_item(messages, item)
    if not request.history:
        messages.append({"role": "user", "content": request.input_text})
    return messages


def _append_item(messages: list[dict[str, Any]], item: Item) -> None:
    """Add one history item to the messages."""
    kind = item.get("type")
    if kind == "message":
        role = item.get("role")
        if role in ("user", "assistant", "system"):
            messages.append({"role": role, "content": item_text(item)})
    elif kind == "functionCall":
        call = {
            "id": item.get("callId"),
            "type": "function",
            "function": {
                "name": item.get("name"),
                "arguments": sent_arguments(item.get("arguments")),
            },
        }
        last = messages[-1] if messages else None
        # The API wants every call a reply makes on one assistant message
        # (with the reply's text, which the history keeps just before the
        # calls), followed by their tool messages.
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "functionCallOutput":
        messages.append(
            {"role": "tool", "tool_call_id": item.get("callId"), "content": item.get("output")}
        )
    # Reasoning items are not sent back: Chat Completions has no input for them.


def chat_tools(tools: Sequence[FunctionTool]) -> list[dict[str, Any]]:
    """The functions offered to the model, as Chat Completions `tools`."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


# Chat's finish reasons that are not a plain stop, as turnComplete.finishReason says them.
_FINISH_REASONS = {"length": "length", "content_filter": "refusal"}


class ChatStreamParser:
    """Reads `chat.completion.chunk` events up to `[DONE]`."""

    def __init__(self) -> None:
        self.finished = False
        self._finish_reason_seen = False
        # By the fragments' `index`, in the order the model made the calls.
        self._calls: dict[int, PendingCall] = {}

    @property
    def complete(self) -> bool:
        """Whether the reply is whole: `[DONE]`, or a finish reason from a server that omits it.

        A reply of tool calls and no text is whole too: it ends the same way.
        """
        return self.finished or self._finish_reason_seen

    def feed(self, event: str, data: str) -> list[ProviderEvent]:
        """The deltas, tool calls and usage one chunk carries."""
        if data == "[DONE]":
            self.finished = True
            # A server that never sent a finish reason: the calls end here.
            return self._finished_calls()
        if not data:
            return []
        chunk = parse_json_event(data)
        choices = chunk.get("choices")
        # Most chunks are one piece of text and nothing else: say so in few
        # steps. Anything else (reasoning, tool calls, a finish reason, usage,
        # an error, more choices, an empty piece) goes the long way below.
        if type(choices) is list and len(choices) == 1 and chunk.get("usage") is None:
            choice = choices[0]
            if (
                type(choice) is dict
                and choice.get("index", 0) == 0
                and not choice.get("finish_reason")
                and type(delta := choice.get("delta")) is dict
                and type(content := delta.get("content")) is str
                and content
                and delta.get("reasoning_content") is None
                and delta.get("reasoning") is None
                and delta.get("tool_calls") is None
                and "error" not in chunk
                and chunk.get("object") != "error"
            ):
                return [TextDelta(content)]
        if "error" in chunk or chunk.get("object") == "error":
            raise_stream_error(chunk.get("error", chunk))
        out: list[ProviderEvent] = []
        if isinstance(choices, list):
            for choice in choices:
                # Only one completion is asked for; another index would be a bug upstream.
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    # vLLM, llama.cpp and DeepSeek call it reasoning_content,
                    # Ollama and newer vLLM call it reasoning.
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if isinstance(reasoning, str) and reasoning:
                        out.append(ReasoningDelta(reasoning))
                    content = delta.get("content")
                    if isinstance(content, str) and content:
                        out.append(TextDelta(content))
                    fragments = delta.get("tool_calls")
                    if isinstance(fragments, list):
                        for fragment in fragments:
                            if isinstance(fragment, dict):
                                self._add_fragment(fragment)
                if isinstance(delta, dict) and delta.get("refusal"):
                    refusal = delta["refusal"]
                    if isinstance(refusal, str):
                        out.append(TextDelta(refusal))
                    out.append(Finish("refusal"))
                reason = choice.get("finish_reason")
                if reason:
                    self._finish_reason_seen = True
                    if reason in _FINISH_REASONS:
                        out.append(Finish(_FINISH_REASONS[reason]))
                    # Arguments are whole once the choice ends (OpenAI says
                    # "tool_calls", Ollama "stop", a cut-off reply "length").
                    out += self._finished_calls()
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            prompt = usage_number(usage, "prompt_tokens")
            completion = usage_number(usage, "completion_tokens")
            total = usage_number(usage, "total_tokens") or prompt + completion
            out.append(Usage(input_tokens=prompt, output_tokens=completion, total_tokens=total))
        return out

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        """Fold one `tool_calls` fragment into the call it belongs to."""
        call_id = fragment.get("id")
        index = fragment.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            # Some servers leave out `index`: a new id starts a new call, and
            # anything else continues the latest one.
            index = self._index_without_one(call_id)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = PendingCall()
        elif call.sent:
            # Fragments after the call was handed on cannot change it.
            return
        # OpenAI sends the id and the name in the first fragment only; servers
        # that repeat them in every fragment must not have them doubled.
        if isinstance(call_id, str) and call_id and not call.call_id:
            call.call_id = call_id
        function = fragment.get("function")
        if isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name and not call.name:
                call.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments.append(arguments)
            elif isinstance(arguments, dict):
                # Some servers send the arguments as an object, not as text.
                call.arguments.append(json.dumps(arguments, ensure_ascii=False))

    def _index_without_one(self, call_id: object) -> int:
        """The index of a fragment that has none."""
        if not self._calls:
            return 0
        if isinstance(call_id, str) and call_id:
            for index, call in self._calls.items():
                if call.call_id == call_id:
                    return index
            return max(self._calls) + 1
        return max(self._calls)

    def _finished_calls(self) -> list[ProviderEvent]:
        """The calls not yet handed on, in the model's order, each once."""
        return [call.take() for _, call in sorted(self._calls.items()) if not call.sent]


class OpenAIChatProvider(OpenAICompatibleProvider):
    """A Chat Completions server."""

    kind = "openai-chat"
    path = "/chat/completions"

    def build_body(self, request: TurnRequest) -> dict[str, Any]:
        """The streamed chat completion request for one turn."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": chat_messages(request),
            "stream": True,
            # Without this the stream carries no token counts.
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            # max_tokens, not max_completion_tokens: every compatible server
            # knows it (OpenAI's reasoning models want the Responses API anyway).
            body["max_tokens"] = request.max_output_tokens
        if request.tools:
            body["tools"] = chat_tools(request.tools)
        return body

    def new_parser(self) -> ChatStreamParser:
        """A parser for one attempt."""
        return ChatStreamParser()
