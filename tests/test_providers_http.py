"""The OpenAI-compatible providers against a real HTTP server on 127.0.0.1 (fake_openai)."""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from fake_openai import (
    FakeOpenAI,
    Reply,
    Request,
    chat_chunk,
    chat_usage,
    error_body,
    responses_event,
    stream_reply,
)

from convmgr.model import message_item
from convmgr.providers.base import (
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    Retrying,
    TextDelta,
    TurnRequest,
    Usage,
)
from convmgr.providers.http import HttpProviderSettings, OpenAICompatibleProvider, _retry_after
from convmgr.providers.openai_chat import OpenAIChatProvider, chat_messages
from convmgr.providers.openai_responses import OpenAIResponsesProvider, responses_input

pytestmark = pytest.mark.anyio

KEY = "sk-test-Zq8vX3rT9wLmN2pK"
KEY_ENV = "CONVMGR_TEST_KEY"
KINDS = [OpenAIChatProvider, OpenAIResponsesProvider]


def make(
    cls: type[OpenAICompatibleProvider], server: FakeOpenAI | str, **overrides: Any
) -> OpenAICompatibleProvider:
    """A provider of that kind pointed at the server, with fast retries."""
    base_url = server if isinstance(server, str) else server.base_url
    options: dict[str, Any] = {
        "name": "fake",
        "base_url": base_url,
        "default_model": "fake-model",
        "api_key_env": KEY_ENV,
        "request_timeout_s": 5.0,
        "max_retries": 2,
        "retry_base_delay_s": 0.01,
        "retry_max_delay_s": 0.05,
    }
    options.update(overrides)
    return cls(HttpProviderSettings(**options))


def turn(text: str = "hello", instructions: str | None = None) -> TurnRequest:
    """A request whose history is just this turn's user message."""
    return TurnRequest(
        model="fake-model",
        instructions=instructions,
        history=[message_item("user", text)],
        input_text=text,
    )


async def collect(provider: OpenAICompatibleProvider, request: TurnRequest) -> list[ProviderEvent]:
    """Every event of one turn (the provider closed afterwards)."""
    try:
        async with aclosing(provider.stream(request)) as events:  # type: ignore[type-var]
            return [event async for event in events]
    finally:
        await provider.aclose()


async def failure(
    provider: OpenAICompatibleProvider, request: TurnRequest
) -> tuple[list[ProviderEvent], ProviderError]:
    """The events of a turn that must fail, and its error."""
    events: list[ProviderEvent] = []
    try:
        async for event in provider.stream(request):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    finally:
        await provider.aclose()
    raise AssertionError(f"the turn did not fail: {events}")


def final_text(events: Sequence[ProviderEvent]) -> str:
    """The reply as the core builds it: the text deltas after the last Retrying."""
    text: list[str] = []
    for event in events:
        if isinstance(event, Retrying):
            text.clear()
        elif isinstance(event, TextDelta):
            text.append(event.text)
    return "".join(text)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every provider in these tests reads its key from KEY_ENV."""
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


# --- streaming ---------------------------------------------------------------


@pytest.mark.parametrize("cls", KINDS)
async def test_streams_a_long_reply_with_usage(cls: type[OpenAICompatibleProvider]) -> None:
    words = [f"word{i} " for i in range(1000)]

    async def handler(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, words, usage=(11, 1000), reasoning=["let me ", "see"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(cls, server), turn("hi", instructions="Be brief."))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert [d.text for d in deltas] == words
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == ["let me ", "see"]
    assert events[-1] == Usage(input_tokens=11, output_tokens=1000, total_tokens=1011)
    assert not any(isinstance(e, Retrying) for e in events)

    (request,) = server.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json()
    assert body["model"] == "fake-model"
    assert body["stream"] is True
    if cls is OpenAIChatProvider:
        assert request.path == "/v1/chat/completions"
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
    else:
        assert request.path == "/v1/responses"
        assert body["instructions"] == "Be brief."
        assert body["input"] == [{"type": "message", "role": "user", "content": "hi"}]


@pytest.mark.parametrize("cls", KINDS)
async def test_model_settings_reach_the_request(cls: type[OpenAICompatibleProvider]) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, ["ok"])

    request = TurnRequest(
        model="other",
        instructions=None,
        history=[message_item("user", "x")],
        input_text="x",
        temperature=0.25,
        max_output_tokens=64,
    )
    async with FakeOpenAI(handler) as server:
        await collect(make(cls, server), request)
    body = server.requests[0].json()
    assert body["model"] == "other"
    assert body["temperature"] == 0.25
    limit = "max_tokens" if cls is OpenAIChatProvider else "max_output_tokens"
    assert body[limit] == 64
    assert "instructions" not in body


HISTORY = [
    message_item("system", "sys"),
    message_item("user", "q1"),
    {"type": "reasoning", "text": "thinking"},
    message_item("assistant", "a1"),
    {"type": "functionCall", "callId": "c1", "name": "ls", "arguments": "{}"},
    {"type": "functionCall", "callId": "c2", "name": "pwd", "arguments": "{}"},
    {"type": "functionCallOutput", "callId": "c1", "output": "a b"},
    {"type": "functionCallOutput", "callId": "c2", "output": "/"},
    {
        "type": "message",
        "role": "user",
        "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}],
    },
]


def test_history_as_chat_messages() -> None:
    request = TurnRequest(model="m", instructions="be nice", history=HISTORY, input_text="")
    assert chat_messages(request) == [
        {"role": "system", "content": "be nice"},
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {
            "role": "assistant",
            "content": "a1",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "pwd", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a b"},
        {"role": "tool", "tool_call_id": "c2", "content": "/"},
        {"role": "user", "content": "line 1\nline 2"},
    ]


def test_history_as_responses_input() -> None:
    request = TurnRequest(model="m", instructions=None, history=HISTORY, input_text="")
    assert responses_input(request) == [
        {"type": "message", "role": "system", "content": "sys"},
        {"type": "message", "role": "user", "content": "q1"},
        {"type": "message", "role": "assistant", "content": "a1"},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "pwd", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a b"},
        {"type": "function_call_output", "call_id": "c2", "output": "/"},
        {"type": "message", "role": "user", "content": "line 1\nline 2"},
    ]


async def test_sse_framing_is_read_whatever_the_chunking() -> None:
    # CRLF and bare CR line ends, comments, event/id/retry fields, a JSON payload
    # spread over several data lines, multi-byte characters: then the body is cut
    # into 1..7-byte HTTP chunks, so that a line end, a field name or a UTF-8
    # sequence is split between two reads somewhere.
    body = (
        ": keep-alive comment\r\n\r\n"
        "retry: 1000\r\n"
        'data: {"choices":[{"index":0,"delta":{"content":"Grüße, "}}]}\r\n\r\n'
        "event: message\r\nid: 7\r\n"
        'data: {"choices":[{"index":0,\r\n'
        'data: "delta":{"content":"世界 🌍"}}]}\r\n'
        "\r\n"
        ":another comment\n"
        'data:{"choices":[{"index":0,"delta":{"content":" done"},"finish_reason":null}]}\r\r'
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,'
        '"total_tokens":5}}\r\n\r\n'
        "data: [DONE]\r\n\r\n"
    ).encode()
    rng = random.Random(4)

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        at = 0
        while at < len(body):
            step = rng.randint(1, 7)
            await reply.chunk(body[at : at + step])
            at += step
        await reply.end()

    async with FakeOpenAI(handler) as server:
        for _ in range(5):
            provider = make(OpenAIChatProvider, server)
            events = await collect(provider, turn())
            assert [e.text for e in events if isinstance(e, TextDelta)] == [
                "Grüße, ",
                "世界 🌍",
                " done",
            ]
            assert events[-1] == Usage(2, 3, 5)


async def test_a_compressed_stream_is_read() -> None:
    # A proxy may gzip the stream: the bytes are decompressed before splitting.
    import zlib

    compressor = zlib.compressobj(wbits=31)  # gzip framing
    events = [chat_chunk(content=word) for word in ("one ", "two ", "three")]
    events += [chat_chunk(finish="stop"), "[DONE]"]

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start(headers={"Content-Encoding": "gzip"})
        for event in events:
            text = event if isinstance(event, str) else json.dumps(event)
            data = compressor.compress(f"data: {text}\n\n".encode())
            await reply.chunk(data + compressor.flush(zlib.Z_SYNC_FLUSH))
        await reply.chunk(compressor.flush())
        await reply.end()

    async with FakeOpenAI(handler) as server:
        got = await collect(make(OpenAIChatProvider, server), turn())
    assert got == [TextDelta("one "), TextDelta("two "), TextDelta("three")]


async def test_events_before_garbage_in_the_same_read_come_out_first() -> None:
    # All the events of a read are parsed before any is handed on: the good
    # ones before the bad one must still be streamed before the failure.
    good = "".join(f"data: {json.dumps(chat_chunk(content=w))}\n\n" for w in ("a", "b"))

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.chunk(f"{good}data: {{oops\n\n".encode())
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(OpenAIChatProvider, server), turn())
    assert events == [TextDelta("a"), TextDelta("b")]
    assert error.code == "bad_stream"


async def test_a_responses_stream_as_openai_sends_it() -> None:
    # Every event named in `event:` as well as in `type`, with the bookkeeping
    # events around the deltas, two reasoning summary parts, and `done` events
    # that repeat the text (they are skipped, not parsed).
    def named(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": 0, **fields}

    script = [
        named("response.created", response={"id": "resp_1", "status": "in_progress"}),
        named("response.in_progress", response={"id": "resp_1"}),
        named("response.output_item.added", output_index=0, item={"type": "reasoning"}),
        named("response.reasoning_summary_part.added", summary_index=0),
        named("response.reasoning_summary_text.delta", summary_index=0, delta="First, "),
        named("response.reasoning_summary_text.delta", summary_index=0, delta="look."),
        named("response.reasoning_summary_text.delta", summary_index=1, delta="Then answer."),
        named("response.reasoning_summary_text.done", summary_index=1, text="Then answer."),
        named("response.output_item.added", output_index=1, item={"type": "message"}),
        named("response.content_part.added", output_index=1, content_index=0),
        named("response.output_text.delta", output_index=1, content_index=0, delta="Forty"),
        named("response.output_text.delta", output_index=1, content_index=0, delta="-two."),
        named("response.output_text.done", output_index=1, content_index=0, text="Forty-two."),
        named("response.content_part.done", part={"type": "output_text", "text": "Forty-two."}),
        named("response.output_item.done", item={"type": "message"}),
        named(
            "response.completed",
            response={
                "id": "resp_1",
                "status": "completed",
                "usage": {"input_tokens": 9, "output_tokens": 20, "total_tokens": 29},
            },
        ),
    ]

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        for name, payload in script:
            await reply.sse(payload, event=name)
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events = await collect(make(OpenAIResponsesProvider, server), turn())
    assert events == [
        ReasoningDelta("First, "),
        ReasoningDelta("look."),
        ReasoningDelta("\n\n"),
        ReasoningDelta("Then answer."),
        TextDelta("Forty"),
        TextDelta("-two."),
        Usage(9, 20, 29),
    ]


async def test_connections_are_reused_between_turns() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, ["a", "b"])

    async with FakeOpenAI(handler) as server:
        provider = make(OpenAIChatProvider, server)
        for _ in range(3):
            async for _event in provider.stream(turn()):
                pass
        await provider.aclose()
    assert len(server.requests) == 3
    assert server.connections == 1


# --- retries -----------------------------------------------------------------


@pytest.mark.parametrize("cls", KINDS)
async def test_500_then_success(cls: type[OpenAICompatibleProvider]) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        if len(server.requests) == 1:
            await reply.json_response(500, error_body("the model is overloaded"))
        else:
            await stream_reply(request, reply, ["fine ", "now"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(cls, server), turn())
    retry = events[0]
    assert isinstance(retry, Retrying)
    assert retry.attempt == 1
    assert retry.message == "HTTP 500: the model is overloaded"
    assert 5 <= retry.retry_in_ms <= 10  # half to all of the 10 ms base backoff
    assert final_text(events) == "fine now"
    assert len(server.requests) == 2


async def test_429_honours_retry_after() -> None:
    arrivals: list[float] = []

    async def handler(request: Request, reply: Reply) -> None:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            await reply.json_response(
                429, error_body("slow down", "rate_limit_exceeded"), {"Retry-After": "0.3"}
            )
        else:
            await stream_reply(request, reply, ["ok"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(OpenAIChatProvider, server), turn())
    retry = events[0]
    assert isinstance(retry, Retrying)
    assert retry.message == "HTTP 429: slow down"
    # Retry-After wins over the 10 ms backoff; at most 10 % jitter is added.
    assert 300 <= retry.retry_in_ms <= 331
    assert arrivals[1] - arrivals[0] >= 0.3
    assert final_text(events) == "ok"


async def test_too_long_retry_after_fails_at_once() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.json_response(429, error_body("quota"), {"Retry-After": "3600"})

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(OpenAIChatProvider, server), turn())
    assert events == []
    assert error.message == "HTTP 429: quota (the provider asks to wait 3600 s)"
    assert error.code == "http_429"
    assert len(server.requests) == 1


def test_retry_after_forms() -> None:
    import httpx

    assert _retry_after(httpx.Headers({"retry-after": "2"})) == 2.0
    assert _retry_after(httpx.Headers({"retry-after-ms": "150", "retry-after": "9"})) == 0.15
    assert _retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    # An HTTP date has whole seconds: 30 s ahead of now, then bracketed by the clock
    # read before and after the call, whatever the time between the lines.
    target = int(time.time()) + 30
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(target))
    before = time.time()
    delay = _retry_after(httpx.Headers({"retry-after": date}))
    after = time.time()
    assert delay is not None and target - after <= delay <= target - before
    assert _retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert _retry_after(httpx.Headers({})) is None


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    provider = make(
        OpenAIChatProvider,
        "http://127.0.0.1:1/v1",
        retry_base_delay_s=1.0,
        retry_max_delay_s=8.0,
    )
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [provider._retry_delay(attempt, None) for _ in range(50)]
        assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize("cls", KINDS)
async def test_exhausted_retries_fail_with_the_last_error(
    cls: type[OpenAICompatibleProvider],
) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.json_response(503, {"error": "upstream unavailable"})

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(cls, server), turn())
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [1, 2]
    assert error.message == "HTTP 503: upstream unavailable (gave up after 3 attempts)"
    assert error.code == "http_503"
    assert len(server.requests) == 3


@pytest.mark.parametrize("cls", KINDS)
async def test_a_connection_dropped_mid_stream_is_retried_from_the_start(
    cls: type[OpenAICompatibleProvider],
) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        if len(server.requests) == 1:
            await reply.start()
            for piece in ["The ", "ans"]:
                if cls is OpenAIChatProvider:
                    await reply.sse(chat_chunk(content=piece))
                else:
                    await reply.sse(responses_event("response.output_text.delta", delta=piece))
            await reply.drop()
        else:
            await stream_reply(request, reply, ["The ", "answer ", "is ", "42"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(cls, server), turn())
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["TextDelta", "TextDelta", "Retrying"]
    retry = events[2]
    assert isinstance(retry, Retrying)
    assert "the connection to the provider broke" in retry.message
    assert final_text(events) == "The answer is 42"


async def test_a_stream_that_ends_early_is_retried() -> None:
    # A well-formed HTTP body that stops before [DONE] or a finish reason.
    async def handler(request: Request, reply: Reply) -> None:
        if len(server.requests) == 1:
            await reply.start()
            await reply.sse(chat_chunk(content="half"))
            await reply.end()
        else:
            await stream_reply(request, reply, ["whole"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(OpenAIChatProvider, server), turn())
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.message == "the stream ended before the reply was complete"
    assert final_text(events) == "whole"


async def test_chat_without_done_but_with_finish_reason_is_complete() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.sse(chat_chunk(content="ok"))
        await reply.sse(chat_chunk(finish="stop"))
        await reply.sse(chat_usage(1, 1))
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events = await collect(make(OpenAIChatProvider, server), turn())
    assert events == [TextDelta("ok"), Usage(1, 1, 2)]


async def test_a_silent_provider_times_out_and_is_retried() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.wait_closed()

    async with FakeOpenAI(handler) as server:
        provider = make(OpenAIChatProvider, server, request_timeout_s=0.2, max_retries=1)
        events: list[ProviderEvent] = []
        times = [time.monotonic()]
        # A failure guard only: the server never answers, so only the 0.2 s read
        # timeout (not the 600 s default) can end each attempt before it.
        with anyio.fail_after(30), pytest.raises(ProviderError) as caught:
            try:
                async for event in provider.stream(turn()):
                    events.append(event)
                    times.append(time.monotonic())
            finally:
                times.append(time.monotonic())
                await provider.aclose()
    error = caught.value
    assert [type(e) for e in events] == [Retrying]
    assert error.message == "the provider sent nothing for 0.2 s (gave up after 2 attempts)"
    assert error.code == "timeout"
    # Each attempt waited out the read timeout (the second one after the Retrying):
    # lower bounds, which load can only lengthen.
    start, retried, failed = times
    assert retried - start >= 0.2
    assert failed - retried >= 0.2
    assert len(server.requests) == 2


async def test_an_unreachable_provider_is_retried_then_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: connections are refused.
    provider = make(OpenAIChatProvider, f"http://127.0.0.1:{port}/v1", max_retries=1)
    events, error = await failure(provider, turn())
    assert [type(e) for e in events] == [Retrying]
    assert error.message.startswith(f"could not connect to http://127.0.0.1:{port}/v1/chat")
    assert error.code == "connection_error"


# --- failures that end the turn ------------------------------------------------


@pytest.mark.parametrize("cls", KINDS)
async def test_401_fails_without_retry(cls: type[OpenAICompatibleProvider]) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.json_response(401, error_body("Incorrect API key provided.", "invalid_api_key"))

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(cls, server), turn())
    assert events == []
    assert error.message == "HTTP 401: Incorrect API key provided."
    assert error.code == "invalid_api_key"
    assert len(server.requests) == 1


async def test_a_plain_text_error_body_is_shown() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply._send_head(404, {"Content-Length": "9", "Content-Type": "text/plain"})
        await reply._stream.send(b"not found")
        reply.ended = True

    async with FakeOpenAI(handler) as server:
        _, error = await failure(make(OpenAIChatProvider, server), turn())
    assert error.message == "HTTP 404: not found"
    assert error.code == "http_404"


@pytest.mark.parametrize("cls", KINDS)
async def test_garbage_in_the_stream_fails_the_turn(cls: type[OpenAICompatibleProvider]) -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.sse(chat_chunk(content="fine"))
        await reply.chunk(b"data: {this is not json\n\n")
        await reply.end()

    async with FakeOpenAI(handler) as server:
        _, error = await failure(make(cls, server), turn())
    assert error.code == "bad_stream"
    assert error.message.startswith("malformed event in the provider's stream: '{this is not")
    assert len(server.requests) == 1


async def test_a_json_answer_to_a_stream_request_fails_the_turn() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.json_response(200, {"object": "chat.completion", "choices": []})

    async with FakeOpenAI(handler) as server:
        _, error = await failure(make(OpenAIChatProvider, server), turn())
    assert error.code == "bad_stream"
    assert "did not answer with an event stream (application/json)" in error.message


async def test_an_error_inside_a_chat_stream() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.sse(chat_chunk(content="par"))
        await reply.sse({"error": {"message": "context too long", "code": "context_length"}})
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(OpenAIChatProvider, server), turn())
    assert events == [TextDelta("par")]
    assert (error.message, error.code) == ("context too long", "context_length")


async def test_a_transient_error_inside_a_chat_stream_is_retried() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        if len(server.requests) == 1:
            await reply.start()
            await reply.sse(chat_chunk(content="par"))
            error = {"message": "overloaded", "type": "server_error", "code": None}
            await reply.sse({"error": error})
            await reply.end()
        else:
            await stream_reply(request, reply, ["whole"])

    async with FakeOpenAI(handler) as server:
        events = await collect(make(OpenAIChatProvider, server), turn())
    assert [type(e) for e in events[:2]] == [TextDelta, Retrying]
    assert events[1].message == "overloaded"  # type: ignore[union-attr]
    assert final_text(events) == "whole"


async def test_response_failed_and_error_events() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        if len(server.requests) == 1:
            # A server error is worth another attempt ...
            error = {"code": "server_error", "message": "try again"}
            await reply.sse(responses_event("response.failed", response={"error": error}))
        else:
            # ... a bad request is not.
            await reply.sse(responses_event("error", code="bad_model", message="no such model"))
        await reply.end()

    async with FakeOpenAI(handler) as server:
        events, error = await failure(make(OpenAIResponsesProvider, server), turn())
    assert events == [Retrying("try again", 1, events[0].retry_in_ms)]  # type: ignore[union-attr]
    assert (error.message, error.code) == ("no such model", "bad_model")


async def test_a_missing_key_fails_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)

    async def handler(request: Request, reply: Reply) -> None:
        raise AssertionError("no request expected")

    async with FakeOpenAI(handler) as server:
        _, error = await failure(make(OpenAIChatProvider, server), turn())
    assert error.code == "missing_api_key"
    assert KEY_ENV in error.message
    assert server.requests == []


async def test_no_key_configured_sends_no_authorization() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, ["x"])

    async with FakeOpenAI(handler) as server:
        await collect(make(OpenAIChatProvider, server, api_key_env=None), turn())
    assert "authorization" not in server.requests[0].headers


# --- cancellation and concurrency -----------------------------------------------


@pytest.mark.parametrize("after_deltas", [False, True])
@pytest.mark.parametrize("cls", KINDS)
async def test_an_interrupt_closes_a_silent_stream_without_waiting_for_it(
    cls: type[OpenAICompatibleProvider], after_deltas: bool
) -> None:
    # The server says nothing more until the client goes away, and no read
    # timeout can fire during the test: only the interrupt itself can end the
    # stream. A cancellation that waited for the server (or for a timeout) to
    # end the stream would never finish, and the failure guard would fire.
    silent = anyio.Event()

    async def handler(request: Request, reply: Reply) -> None:
        if after_deltas:
            await reply.start()
            await reply.sse(chat_chunk(content="thinking"))
        silent.set()
        await reply.wait_closed()

    async with FakeOpenAI(handler) as server:
        provider = make(cls, server, request_timeout_s=3600.0)
        seen: list[ProviderEvent] = []

        async def consume() -> None:
            async for event in provider.stream(turn()):
                seen.append(event)

        with anyio.fail_after(30):  # a failure guard only
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await silent.wait()
                group.cancel_scope.cancel()
            # The server sees the connection go away before the provider is
            # closed: the interrupt itself closed the stream.
            await server.client_gone.wait()
        await provider.aclose()
    assert not any(isinstance(e, Retrying) for e in seen)
    assert len(server.requests) == 1


async def test_streams_from_a_fast_and_a_slow_provider_do_not_wait_for_each_other() -> None:
    # The slow provider sends one delta, then holds its stream open until the
    # test opens the gate. The fast reply must be read whole while the slow
    # stream is provably still open and waiting on the gate: if either stream
    # waited for the other, nothing would move and the failure guard would fire.
    gate = anyio.Event()
    slow_open = anyio.Event()  # the slow reader has the first delta
    slow_done = anyio.Event()
    slow_seen: list[ProviderEvent] = []

    async def fast(request: Request, reply: Reply) -> None:
        await stream_reply(request, reply, [f"f{i} " for i in range(50)])

    async def slow(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.sse(chat_chunk(content="s0 "))
        await gate.wait()
        for i in range(1, 5):
            await reply.sse(chat_chunk(content=f"s{i} "))
        await reply.sse(chat_chunk(finish="stop"))
        await reply.sse("[DONE]")
        await reply.end()

    async def read_slow(provider: OpenAICompatibleProvider) -> None:
        try:
            async with aclosing(provider.stream(turn())) as events:  # type: ignore[type-var]
                async for event in events:
                    slow_seen.append(event)
                    slow_open.set()
        finally:
            await provider.aclose()
        slow_done.set()

    async with FakeOpenAI(fast) as fast_server, FakeOpenAI(slow) as slow_server:
        with anyio.fail_after(30):  # a failure guard only
            async with anyio.create_task_group() as group:
                # No read timeout may end the slow stream while the gate holds it.
                slow_provider = make(OpenAIChatProvider, slow_server, request_timeout_s=3600.0)
                group.start_soon(read_slow, slow_provider)
                await slow_open.wait()
                fast_events = await collect(make(OpenAIChatProvider, fast_server), turn())
                # The fast reply is whole, while the slow stream is still held
                # on the closed gate with only its first delta read.
                assert final_text(fast_events) == "".join(f"f{i} " for i in range(50))
                assert not gate.is_set()
                assert not slow_done.is_set()
                assert slow_seen == [TextDelta("s0 ")]
                gate.set()
                # And the slow stream goes on where it was once the gate opens.
                await slow_done.wait()
    assert final_text(slow_seen) == "s0 s1 s2 s3 s4 "
    assert not any(isinstance(e, Retrying) for e in slow_seen + fast_events)


# --- the key ------------------------------------------------------------------------


async def test_the_key_appears_in_no_event_error_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def handler(request: Request, reply: Reply) -> None:
        # A hostile or careless provider echoes the key in every kind of answer.
        n = len(server.requests)
        leak = f"bad key {KEY}!"
        if n == 1:
            await reply.json_response(500, error_body(leak))
        elif n == 2:
            await reply.start()
            await reply.chunk(f"data: {{{leak}\n\n".encode())
            await reply.end()
        elif n == 3:
            await reply.json_response(503, {"detail": leak}, {"Retry-After": "0"})
        elif n == 4:
            await reply.start()
            await reply.sse({"error": {"message": leak, "code": "server_error"}})
            await reply.end()
        elif n == 5:
            await reply.json_response(429, error_body(leak), {"Retry-After": "9999"})
        elif n == 6:
            await reply.json_response(200, error_body(leak))
        else:
            await reply.json_response(401, error_body(leak))

    texts: list[str] = []
    async with FakeOpenAI(handler) as server:
        for _ in range(6):
            # Turn 1: 500, then garbage. Turn 2: 503, stream error, then 429 too long.
            # Turn 3: JSON error with 200. Turn 4: 401.
            events, error = await failure(make(OpenAIChatProvider, server), turn())
            texts += [repr(e) for e in events]
            texts += [error.message, str(error), repr(error), str(error.code)]
            if len(server.requests) >= 7:
                break
        # And a connection failure.
        events, error = await failure(
            make(OpenAIChatProvider, "http://127.0.0.1:9/v1", max_retries=1), turn()
        )
        texts += [repr(e) for e in events] + [error.message]
    assert len(server.requests) == 7
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert any("bad key ***!" in text for text in texts)
    assert not [text for text in texts if KEY in text]
    assert caplog.records
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()


async def test_a_key_with_a_newline_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-abc\ndef")
    _, error = await failure(make(OpenAIChatProvider, "http://127.0.0.1:9/v1"), turn())
    assert error.code == "bad_api_key"
    assert "abc" not in error.message
