"""Function calling in the OpenAI-compatible providers: tools sent, calls streamed back."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fake_openai import (
    FakeCall,
    FakeOpenAI,
    Reply,
    Request,
    chat_chunk,
    chat_tool_fragment,
    chat_usage,
    responses_call_item,
    responses_completed,
    responses_event,
    send_chopped,
    stream_reply,
    tool_call_events,
    tool_reply_text,
)
from test_providers_http import collect, make

from convmgr.model import function_call_item, function_call_output_item, message_item
from convmgr.providers.base import (
    FunctionTool,
    ProviderEvent,
    Retrying,
    TextDelta,
    ToolCallRequest,
    TurnRequest,
    Usage,
)
from convmgr.providers.http import OpenAICompatibleProvider, StreamParser
from convmgr.providers.openai_chat import ChatStreamParser, OpenAIChatProvider, chat_messages
from convmgr.providers.openai_responses import (
    OpenAIResponsesProvider,
    ResponsesStreamParser,
    responses_input,
)
from convmgr.providers.sse import SSEDecoder

pytestmark = pytest.mark.anyio

KINDS = [OpenAIChatProvider, OpenAIResponsesProvider]
WEATHER = FunctionTool(
    name="get_weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
# Multi-byte characters (2 and 4 bytes in UTF-8) and escapes in the arguments.
ARGS = '{"city": "Zürich 🌍", "note": "say \\"hi\\"", "days": 3}'


def provider(cls: type[OpenAICompatibleProvider], server: FakeOpenAI) -> OpenAICompatibleProvider:
    """A provider of that kind on the fake server, sending no key."""
    return make(cls, server, api_key_env=None)


def ask(
    text: str = "weather?", tools: Sequence[FunctionTool] = (WEATHER,), model: str = "fake-model"
) -> TurnRequest:
    """A first model call of a turn that offers tools."""
    return TurnRequest(
        model=model,
        instructions=None,
        history=[message_item("user", text)],
        input_text=text,
        tools=tools,
    )


def calls_kept(events: Sequence[ProviderEvent]) -> list[ToolCallRequest]:
    """The calls as the turn loop keeps them: those after the last Retrying."""
    calls: list[ToolCallRequest] = []
    for event in events:
        if isinstance(event, Retrying):
            calls.clear()
        elif isinstance(event, ToolCallRequest):
            calls.append(event)
    return calls


def sse_raw(event: str | None, payload: dict[str, Any] | str) -> bytes:
    """One event as sent, its non-ASCII characters as raw UTF-8 (not \\u escapes)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def parse_pieces(parser: StreamParser, pieces: Sequence[bytes]) -> list[ProviderEvent]:
    """What a parser makes of a stream that arrives in these pieces."""
    decoder = SSEDecoder()
    out: list[ProviderEvent] = []
    for piece in pieces:
        for name, data in decoder.feed(piece):
            out += parser.feed(name, data)
    return out


def split_at(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    """The body cut at these offsets."""
    bounds = [0, *sorted(set(cuts)), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def is_utf8(data: bytes) -> bool:
    """Whether the bytes are whole UTF-8 (no character cut)."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def request_for(cls: type[OpenAICompatibleProvider]) -> Request:
    """A fake request to the endpoint of that kind (fake_openai picks the format by path)."""
    return Request("POST", f"/v1{cls.path}", {}, b"{}")


def new_parser(cls: type[OpenAICompatibleProvider]) -> StreamParser:
    """A fresh parser of that kind."""
    return ChatStreamParser() if cls is OpenAIChatProvider else ResponsesStreamParser()


# --- the request -------------------------------------------------------------


async def sent_body(cls: type[OpenAICompatibleProvider], request: TurnRequest) -> Any:
    """The body the provider of that kind sends for the request."""

    async def handler(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, ["ok"])

    async with FakeOpenAI(handler) as server:
        await collect(provider(cls, server), request)
    return server.requests[0].json()


@pytest.mark.parametrize("cls", KINDS)
async def test_tools_are_sent_only_when_there_are_some(
    cls: type[OpenAICompatibleProvider],
) -> None:
    without = await sent_body(cls, ask(tools=()))
    with_tools = await sent_body(cls, ask())
    assert "tools" not in without
    if cls is OpenAIChatProvider:
        assert with_tools["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ]
    else:
        assert with_tools["tools"] == [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
                "strict": False,
            }
        ]
    assert {k: v for k, v in with_tools.items() if k != "tools"} == without


def follow_up() -> TurnRequest:
    """The second model call of a turn: text and two calls, then their outputs."""
    history = [
        message_item("user", "q0"),
        message_item("assistant", "a0"),
        message_item("user", "weather?"),
        message_item("assistant", "Let me check."),
        function_call_item("call_1", "get_weather", '{"city": "Paris"}'),
        function_call_item("call_2", "get_weather", '{"city": "Rome"'),
        function_call_output_item("call_1", "sunny", False),
        function_call_output_item("call_2", "arguments are not valid JSON", True),
    ]
    return TurnRequest(
        model="fake-model",
        instructions="Be brief.",
        history=history,
        input_text="weather?",
        tools=[WEATHER],
        turn_items=history[-4:],
    )


async def test_a_chat_follow_up_request_body() -> None:
    assert await sent_body(OpenAIChatProvider, follow_up()) == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "q0"},
            {"role": "assistant", "content": "a0"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    # Not valid JSON: sent as no arguments, which every server takes.
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "arguments are not valid JSON"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
    }


async def test_a_responses_follow_up_request_body() -> None:
    assert await sent_body(OpenAIResponsesProvider, follow_up()) == {
        "model": "fake-model",
        "input": [
            {"type": "message", "role": "user", "content": "q0"},
            {"type": "message", "role": "assistant", "content": "a0"},
            {"type": "message", "role": "user", "content": "weather?"},
            {"type": "message", "role": "assistant", "content": "Let me check."},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": "arguments are not valid JSON",
            },
        ],
        "stream": True,
        "store": False,
        "instructions": "Be brief.",
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
                "strict": False,
            }
        ],
    }


def test_chat_rounds_without_text_each_get_their_assistant_message() -> None:
    # Round 1 has text and a call, round 2 only a call: two assistant messages,
    # each followed by its tool message; a JSON value that is not an object
    # is not sent either.
    history = [
        message_item("user", "go"),
        message_item("assistant", "First,"),
        function_call_item("c1", "ls", "{}"),
        function_call_output_item("c1", "a b", False),
        function_call_item("c2", "cat", '"a"'),
        function_call_output_item("c2", "not an object", True),
        message_item("assistant", "Done."),
    ]
    request = TurnRequest(model="m", instructions=None, history=history, input_text="go")
    ls = {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
    cat = {"id": "c2", "type": "function", "function": {"name": "cat", "arguments": "{}"}}
    assert chat_messages(request) == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "First,", "tool_calls": [ls]},
        {"role": "tool", "tool_call_id": "c1", "content": "a b"},
        {"role": "assistant", "content": None, "tool_calls": [cat]},
        {"role": "tool", "tool_call_id": "c2", "content": "not an object"},
        {"role": "assistant", "content": "Done."},
    ]
    assert [item.get("arguments") for item in responses_input(request)] == [
        None,
        None,
        "{}",
        None,
        "{}",
        None,
        None,
    ]


# --- calls in the stream -----------------------------------------------------


@pytest.mark.parametrize("cls", KINDS)
def test_a_call_split_at_awkward_bytes(cls: type[OpenAICompatibleProvider]) -> None:
    call = FakeCall("call_9", "get_weather", ARGS)
    body = b"".join(
        sse_raw(event, payload)
        for event, payload in tool_call_events(request_for(cls), [call], piece_chars=5)
    )
    emoji = "🌍".encode()
    cuts = [body.index(emoji) + 2, body.index("ü".encode()) + 1]  # inside UTF-8 characters
    cuts += [at + 5 for at in range(len(body)) if body.startswith(b"data:", at)]  # after data:
    cuts.append(body.index(b'\\"cit') + 3)  # inside the arguments' JSON
    pieces = split_at(body, cuts)
    assert any(piece.endswith(b"data:") for piece in pieces)
    assert sum(not is_utf8(piece) for piece in pieces) >= 2
    events = parse_pieces(new_parser(cls), pieces)
    assert events == [ToolCallRequest("call_9", "get_weather", ARGS), Usage(3, 5, 8)]
    assert json.loads(ARGS)["city"] == "Zürich 🌍"


@pytest.mark.parametrize("cls", KINDS)
async def test_a_call_over_http_in_small_chunks(cls: type[OpenAICompatibleProvider]) -> None:
    rng = random.Random(7)

    async def handler(request: Request, reply: Reply) -> None:
        calls = [FakeCall("call_9", "get_weather", ARGS)]
        body = b"".join(sse_raw(e, p) for e, p in tool_call_events(request, calls, piece_chars=4))
        await reply.start()
        await send_chopped(reply, body, rng)
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events = await collect(provider(cls, server), ask())
    assert events == [ToolCallRequest("call_9", "get_weather", ARGS), Usage(3, 5, 8)]


async def test_parallel_chat_calls_interleaved() -> None:
    script = [
        chat_chunk(content="Checking both."),
        chat_tool_fragment(0, "", "call_a", "get_weather"),
        chat_tool_fragment(1, "", "call_b", "get_time"),
        chat_tool_fragment(1, '{"tz": '),
        chat_tool_fragment(0, '{"city"'),
        chat_tool_fragment(0, ': "Oslo"}'),
        chat_tool_fragment(1, '"CET"}'),
        chat_chunk(finish="tool_calls"),
        chat_usage(4, 6),
        "[DONE]",
    ]
    events = parse_pieces(ChatStreamParser(), [sse_raw(None, payload) for payload in script])
    assert events == [
        TextDelta("Checking both."),
        ToolCallRequest("call_a", "get_weather", '{"city": "Oslo"}'),
        ToolCallRequest("call_b", "get_time", '{"tz": "CET"}'),
        Usage(4, 6, 10),
    ]


def test_parallel_responses_calls_keep_the_output_order() -> None:
    # Call 1 is whole before call 0: it waits, so the calls go in output order.
    first, second = (
        FakeCall("call_a", "get_weather", '{"city": "Oslo"}'),
        FakeCall("call_b", "get_time", '{"tz": "CET"}'),
    )

    def named(kind: str, **fields: Any) -> bytes:
        return sse_raw(kind, responses_event(kind, **fields))

    parser = ResponsesStreamParser()
    feed = [
        named("response.output_item.added", output_index=0, item={"type": "message"}),
        named("response.output_text.delta", output_index=0, delta="Checking."),
        named(
            "response.output_item.added",
            output_index=1,
            item=responses_call_item(first, "", "in_progress"),
        ),
        named(
            "response.output_item.added",
            output_index=2,
            item=responses_call_item(second, "", "in_progress"),
        ),
        named("response.function_call_arguments.delta", output_index=2, delta='{"tz": "CET"}'),
        named(
            "response.output_item.done",
            output_index=2,
            item=responses_call_item(second, second.arguments, "completed"),
        ),
    ]
    assert parse_pieces(parser, feed) == [TextDelta("Checking.")]
    more = [
        named("response.function_call_arguments.delta", item_id="fc_call_a", delta='{"city": '),
        named("response.function_call_arguments.delta", item_id="fc_call_a", delta='"Oslo"}'),
        named(
            "response.function_call_arguments.done",
            output_index=1,
            arguments=first.arguments,
        ),
        named(
            "response.output_item.done",
            output_index=1,
            item=responses_call_item(first, first.arguments, "completed"),
        ),
        sse_raw("response.completed", responses_completed(2, 3)),
    ]
    decoder_events = parse_pieces(parser, more)
    assert decoder_events == [
        ToolCallRequest("call_a", "get_weather", first.arguments),
        ToolCallRequest("call_b", "get_time", second.arguments),
        Usage(2, 3, 5),
    ]


@pytest.mark.parametrize("cls", KINDS)
async def test_several_calls_in_one_reply_over_http(cls: type[OpenAICompatibleProvider]) -> None:
    calls = [
        FakeCall("call_1", "get_weather", '{"city": "Oslo"}'),
        FakeCall("call_2", "get_weather", '{"city": "Lima"}'),
        FakeCall("call_3", "get_time", "{}"),
    ]

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        for event, payload in tool_call_events(request, calls):
            await reply.sse(payload, event=event)
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events = await collect(provider(cls, server), ask())
    assert events == [ToolCallRequest(c.call_id, c.name, c.arguments) for c in calls] + [
        Usage(3, 5, 8)
    ]


@pytest.mark.parametrize("cls", KINDS)
@pytest.mark.parametrize("arguments", ['{"city": "Par', "not json at all", "[1, 2]"])
def test_arguments_that_are_not_a_json_object_pass_through(
    cls: type[OpenAICompatibleProvider], arguments: str
) -> None:
    call = FakeCall("call_x", "get_weather", arguments)
    events = [
        sse_raw(event, payload) for event, payload in tool_call_events(request_for(cls), [call])
    ]
    assert parse_pieces(new_parser(cls), events)[0] == ToolCallRequest(
        "call_x", "get_weather", arguments
    )


@pytest.mark.parametrize("cls", KINDS)
def test_a_call_without_arguments_has_an_empty_object(
    cls: type[OpenAICompatibleProvider],
) -> None:
    call = FakeCall("call_x", "get_time", "")
    events = [
        sse_raw(event, payload) for event, payload in tool_call_events(request_for(cls), [call])
    ]
    assert parse_pieces(new_parser(cls), events)[0] == ToolCallRequest("call_x", "get_time", "{}")


def test_a_chat_chunk_with_text_and_a_call_keeps_both() -> None:
    chunk = chat_tool_fragment(0, "{}", "call_1", "get_time")
    chunk["choices"][0]["delta"]["content"] = "Now: "
    script = [chunk, chat_chunk(finish="tool_calls"), "[DONE]"]
    events = parse_pieces(ChatStreamParser(), [sse_raw(None, p) for p in script])
    assert events == [TextDelta("Now: "), ToolCallRequest("call_1", "get_time", "{}")]


def test_chat_calls_without_index_or_id_as_some_servers_send_them() -> None:
    # Whole calls in one chunk with no `index` (older Ollama) and finish_reason
    # "stop"; a second server repeats id and name in every fragment; a call
    # with no id gets one.
    whole: dict[str, Any] = chat_chunk(finish="stop")
    whole["choices"][0]["delta"]["tool_calls"] = [
        {"id": "call_a", "function": {"name": "ls", "arguments": {"path": "/"}}},
        {"id": "call_b", "function": {"name": "pwd", "arguments": "{}"}},
    ]
    events = parse_pieces(ChatStreamParser(), [sse_raw(None, whole), b"data: [DONE]\n\n"])
    assert events == [
        ToolCallRequest("call_a", "ls", '{"path": "/"}'),
        ToolCallRequest("call_b", "pwd", "{}"),
    ]

    repeated = [
        chat_tool_fragment(0, '{"a"', "call_r", "echo"),
        chat_tool_fragment(0, ": 1}", "call_r", "echo"),
        chat_tool_fragment(1, "{}", None, "noid"),
        "[DONE]",
    ]
    events = parse_pieces(ChatStreamParser(), [sse_raw(None, p) for p in repeated])
    assert events[0] == ToolCallRequest("call_r", "echo", '{"a": 1}')
    last = events[1]
    assert isinstance(last, ToolCallRequest) and last.name == "noid"
    assert last.call_id.startswith("call_") and len(last.call_id) > len("call_")


def test_responses_calls_only_in_the_final_output() -> None:
    # A server that streams no item events: the calls are in response.completed.
    completed = responses_completed(1, 2)
    completed["response"]["output"] = [
        {"type": "message", "role": "assistant", "content": []},
        {"type": "function_call", "call_id": "call_f", "name": "ls", "arguments": "{}"},
        # No call_id: the item's id names the call.
        {"type": "function_call", "id": "fc_2", "name": "pwd", "arguments": ""},
    ]
    events = parse_pieces(ResponsesStreamParser(), [sse_raw("response.completed", completed)])
    assert events == [
        ToolCallRequest("call_f", "ls", "{}"),
        ToolCallRequest("fc_2", "pwd", "{}"),
        Usage(1, 2, 3),
    ]


def test_a_chat_reply_of_calls_only_is_complete_at_its_finish_reason() -> None:
    parser = ChatStreamParser()
    parse_pieces(parser, [sse_raw(None, chat_tool_fragment(0, "{}", "call_1", "ls"))])
    assert not parser.complete
    parse_pieces(parser, [sse_raw(None, chat_chunk(finish="tool_calls"))])
    assert parser.complete


# --- retries -----------------------------------------------------------------


@pytest.mark.parametrize("cls", KINDS)
async def test_a_stream_cut_inside_the_arguments_is_retried_and_calls_come_once(
    cls: type[OpenAICompatibleProvider],
) -> None:
    calls = [
        FakeCall("call_1", "get_weather", '{"city": "Oslo"}'),
        FakeCall("call_2", "get_weather", ARGS),
    ]

    async def handler(request: Request, reply: Reply) -> None:
        events = tool_call_events(request, calls)
        await reply.start()
        if len(server.requests) == 1:
            # Up to the middle of the second call's arguments, then the
            # connection drops.
            body = b"".join(sse_raw(e, p) for e, p in events)
            await reply.chunk(body[: body.index("Zü".encode()) + 2])
            await reply.drop()
            return
        for event, payload in events:
            await reply.sse(payload, event=event)
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events = await collect(provider(cls, server), ask())
    assert len(server.requests) == 2
    retries = [i for i, e in enumerate(events) if isinstance(e, Retrying)]
    assert len(retries) == 1
    before = [e for e in events[: retries[0]] if isinstance(e, ToolCallRequest)]
    # Chat hands calls on when the choice ends; Responses as each call is whole.
    assert before == ([] if cls is OpenAIChatProvider else [ToolCallRequest(*vars_of(calls[0]))])
    assert calls_kept(events) == [ToolCallRequest(*vars_of(call)) for call in calls]
    assert events[-1] == Usage(3, 5, 8)


def vars_of(call: FakeCall) -> tuple[str, str, str]:
    """A fake call's fields, in ToolCallRequest's order."""
    return call.call_id, call.name, call.arguments


# --- the fake server's tool scenario ----------------------------------------


@pytest.mark.parametrize("cls", KINDS)
async def test_the_tool_scenario_calls_then_answers_with_the_output(
    cls: type[OpenAICompatibleProvider],
) -> None:
    async with FakeOpenAI() as server:
        first = TurnRequest(
            model='tool:get_weather:{"city": "Paris"}',
            instructions=None,
            history=[message_item("user", "q0"), message_item("user", "weather?")],
            input_text="weather?",
            tools=[WEATHER],
        )
        events = await collect(provider(cls, server), first)
        assert events[0] == ToolCallRequest("call_2_1", "get_weather", '{"city": "Paris"}')
        turn_items = [
            function_call_item("call_2_1", "get_weather", '{"city": "Paris"}'),
            function_call_output_item("call_2_1", "sunny, 21 °C", False),
        ]
        second = TurnRequest(
            model=first.model,
            instructions=None,
            history=[*first.history, *turn_items],
            input_text="weather?",
            tools=[WEATHER],
            turn_items=turn_items,
        )
        events = await collect(provider(cls, server), second)
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert text == tool_reply_text(["sunny, 21 °C"]) == "tool said: sunny, 21 °C"

        # Another process reads the recorded bodies over HTTP.
        async with httpx.AsyncClient() as client:
            answer = await client.get(server.base_url.replace("/v1", "/_requests"))
    recorded = answer.json()["requests"]
    assert [r["body"] for r in recorded] == [r.json() for r in server.requests[:2]]
    assert [r["path"] for r in recorded] == [f"/v1{cls.path}"] * 2
    assert "tools" in recorded[1]["body"]


@pytest.mark.parametrize("cls", KINDS)
async def test_the_tool_scenario_with_parallel_and_broken_calls(
    cls: type[OpenAICompatibleProvider],
) -> None:
    async with FakeOpenAI() as server:
        events = await collect(provider(cls, server), ask(model="tool:a,b"))
        assert calls_kept(events) == [
            ToolCallRequest("call_1_1", "a", "{}"),
            ToolCallRequest("call_1_2", "b", "{}"),
        ]
        broken = ask(model='tool:get_weather:{"city": "Par')
        events = await collect(provider(cls, server), broken)
        assert calls_kept(events) == [ToolCallRequest("call_1_1", "get_weather", '{"city": "Par')]
