"""A scriptable OpenAI-compatible HTTP/1.1 server on 127.0.0.1, for tests and benchmarks.

In a test, give `FakeOpenAI` a handler that scripts the reply:

    async def handler(request: Request, reply: Reply) -> None:
        await reply.start()
        await reply.sse(chat_chunk(content="Hi"))
        await reply.sse("[DONE]")
        await reply.end()

    async with FakeOpenAI(handler) as server:
        ... OpenAIChatProvider(settings(base_url=server.base_url)) ...

Without a handler, `scenario_handler` reads the script from the request's model
name: `deltas:2000`; `deltas:200:5` for 5 ms between deltas; `deltas:200:5:jitter`
for pauses of 0 to 10 ms; `status:503`; `silent`; `tool:...` (below); anything
else echoes the last user message. So a server in another process can be driven
too: `python tests/fake_openai.py` prints its base URL and serves until killed,
and `GET /_stats` tells how long the last `deltas` stream took to send.
`GET /v1/models` lists one model, `ok` (what `convmgr doctor --check` asks).

Tool scenarios, in either API's format (`/chat/completions` or `/responses`):

- `tool:NAME` or `tool:NAME:ARGS`: while the input has no tool output after
  its last user message, the reply is a call to NAME with ARGS (the raw text
  of the arguments, everything after the second colon; `{}` when absent; it
  need not be valid JSON, e.g. `tool:get_weather:{"city":"Par` for a broken
  call). `tool:a,b:ARGS` asks for calls to `a` and `b` in one reply (parallel,
  both with ARGS). Call ids are `call_T_N`: T the number of user messages in
  the input, N the call's number in the reply, from 1. The arguments stream in
  pieces of 3 characters.
- Once the input has tool outputs after its last user message (the follow-up
  request), the reply is the text `tool said: ` followed by those outputs'
  texts in order, joined by ` | ` (`tool_reply_text` builds it), streamed word
  by word; a later user message starts over with a call.

Every request is recorded: `server.requests` in the same process (`Request.json()`
is the body; `path` has no query, `query` holds it), `GET /_requests` from another
one (`{"requests": [{"path", "query", "headers", "body"}]}`, the POSTs in the order
received).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

_MAX_HEAD = 64 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Request:
    """One HTTP request as the server read it."""

    method: str
    path: str
    # Header names in lower case.
    headers: dict[str, str]
    body: bytes
    # What follows `?` in the request target ("" when nothing does).
    query: str = ""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class Reply:
    """Writes the response to one request; handlers call these in order."""

    def __init__(self, stream: anyio.abc.ByteStream, server: FakeOpenAI) -> None:
        self._stream = stream
        self._server = server
        self.started = False
        self.ended = False
        self.dropped = False

    async def start(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "text/event-stream; charset=utf-8",
    ) -> None:
        """Send the status line and headers of a chunked response."""
        head = {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
        head.update(headers or {})
        await self._send_head(status, head)

    async def chunk(self, data: bytes) -> None:
        """Send one HTTP chunk (the client may see its bytes as one piece)."""
        if data:
            await self._stream.send(b"%x\r\n%s\r\n" % (len(data), data))

    async def sse(self, data: str | dict[str, Any], event: str | None = None) -> None:
        """Send one server-sent event, JSON-encoding a dict."""
        await self.chunk(sse_bytes(data, event))

    async def end(self) -> None:
        """Finish a chunked response (the connection stays open for the next request)."""
        await self._stream.send(b"0\r\n\r\n")
        self.ended = True

    async def json_response(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Send a whole JSON response with a Content-Length."""
        data = json.dumps(body).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        head.update(headers or {})
        await self._send_head(status, head)
        await self._stream.send(data)
        self.ended = True

    async def drop(self) -> None:
        """Close the connection in the middle of the response."""
        self.dropped = True
        await self._stream.aclose()

    async def wait_closed(self) -> None:
        """Say nothing until the client goes away, then record that it did."""
        try:
            while await self._stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        self.dropped = True
        self._server.client_gone.set()

    async def _send_head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self._stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.started = True


Handler = Callable[[Request, Reply], Awaitable[None]]


@dataclass
class FakeOpenAI:
    """The server; `async with` starts it on a free port and stops it."""

    handler: Handler | None = None
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    last_stream_s: float = 0.0
    client_gone: anyio.Event = field(default_factory=anyio.Event)

    @property
    def base_url(self) -> str:
        """The URL to configure as a provider's base_url."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        self._listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.port
        )
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._listener.serve, self._serve_connection)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        await self._listener.aclose()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        async with self:
            await anyio.sleep_forever()

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        """Answer requests on one connection until either side closes it."""
        self.connections += 1
        buffer = b""
        try:
            while True:
                request, buffer = await _read_request(stream, buffer)
                if request is None:
                    return
                self.requests.append(request)
                reply = Reply(stream, self)
                if request.method == "GET" and request.path == "/_stats":
                    await reply.json_response(200, {"last_stream_s": self.last_stream_s})
                    continue
                if request.method == "GET" and request.path == "/_requests":
                    await reply.json_response(200, {"requests": self.request_bodies()})
                    continue
                if request.method == "GET" and request.path == "/v1/models":
                    await reply.json_response(200, {"object": "list", "data": [{"id": "ok"}]})
                    continue
                await (self.handler or self.scenario_handler)(request, reply)
                if reply.dropped:
                    return
                if not reply.ended:
                    if not reply.started:
                        await reply.start()
                    await reply.end()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except OSError:
            pass
        finally:
            await stream.aclose()

    def request_bodies(self) -> list[dict[str, Any]]:
        """The POST requests received so far: path and JSON body."""
        return [
            {
                "path": request.path,
                "query": request.query,
                "headers": request.headers,
                "body": request.json(),
            }
            for request in self.requests
            if request.method == "POST"
        ]

    async def scenario_handler(self, request: Request, reply: Reply) -> None:
        """Follow the script in the model name (see the module docstring)."""
        body = request.json()
        model = str(body.get("model", ""))
        name, _, arg = model.partition(":")
        if name == "status":
            code = int(arg)
            await reply.json_response(code, error_body(f"scripted {code}"))
        elif name == "silent":
            await reply.start()
            await reply.wait_closed()
        elif name == "deltas":
            count, _, rest = arg.partition(":")
            interval, _, jitter = rest.partition(":")
            pieces = (f"w{i} " for i in range(int(count)))
            started = time.perf_counter()
            await stream_reply(
                request,
                reply,
                pieces,
                interval_s=float(interval or 0) / 1000,
                jitter=jitter == "jitter",
            )
            self.last_stream_s = time.perf_counter() - started
        elif name == "tool":
            await tool_scenario(request, reply, arg)
        else:
            words = last_user_text(body).split(" ")
            pieces = (w + " " if i < len(words) - 1 else w for i, w in enumerate(words))
            await stream_reply(request, reply, pieces)


async def _read_request(
    stream: anyio.abc.ByteStream, buffer: bytes
) -> tuple[Request | None, bytes]:
    """The next request on the connection (None at a clean end) and the bytes after it."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            raise anyio.BrokenResourceError("request head too large")
        try:
            buffer += await stream.receive()
        except anyio.EndOfStream:
            return None, b""
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    path, _, query = target.partition("?")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        buffer += await stream.receive()
    return Request(method, path, headers, buffer[:length], query), buffer[length:]


def sse_bytes(data: str | dict[str, Any], event: str | None = None) -> bytes:
    """One server-sent event as sent, JSON-encoding a dict."""
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def delta_bytes(request: Request, piece: str) -> bytes:
    """One text delta as sent, in the format of the endpoint asked."""
    if request.path.endswith("/responses"):
        kind = "response.output_text.delta"
        return sse_bytes(responses_event(kind, delta=piece), event=kind)
    return sse_bytes(chat_chunk(content=piece))


def chat_chunk(
    content: str | None = None, reasoning: str | None = None, finish: str | None = None
) -> dict[str, Any]:
    """A `chat.completion.chunk` with one choice."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    """The final usage chunk of a chat stream (stream_options.include_usage)."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def responses_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A Responses API stream event."""
    return {"type": kind, **fields}


def responses_completed(prompt: int, completion: int) -> dict[str, Any]:
    """The `response.completed` event with usage."""
    usage = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return responses_event(
        "response.completed", response={"id": "resp_1", "status": "completed", "usage": usage}
    )


def error_body(message: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


async def stream_reply(
    request: Request,
    reply: Reply,
    pieces: Iterable[str],
    *,
    interval_s: float = 0.0,
    jitter: bool = False,
    usage: tuple[int, int] = (3, 5),
    reasoning: Iterable[str] = (),
) -> None:
    """Stream a whole, well-formed reply in the format of the endpoint asked."""
    responses = request.path.endswith("/responses")
    await reply.start()
    for piece in reasoning:
        if responses:
            event = responses_event("response.reasoning_text.delta", delta=piece)
            await reply.sse(event, event="response.reasoning_text.delta")
        else:
            await reply.sse(chat_chunk(reasoning=piece))
    for piece in pieces:
        if interval_s:
            # With jitter the pauses vary around the interval, as a model's
            # do, and many streams do not all send at the same moments.
            await anyio.sleep(random.uniform(0, 2 * interval_s) if jitter else interval_s)
        if responses:
            event = responses_event("response.output_text.delta", delta=piece)
            await reply.sse(event, event="response.output_text.delta")
        else:
            await reply.sse(chat_chunk(content=piece))
    if responses:
        await reply.sse(responses_completed(*usage), event="response.completed")
    else:
        await reply.sse(chat_chunk(finish="stop"))
        await reply.sse(chat_usage(*usage))
        await reply.sse("[DONE]")
    await reply.end()


@dataclass(frozen=True)
class FakeCall:
    """A function call a scripted reply asks for."""

    call_id: str
    name: str
    arguments: str


def chat_tool_fragment(
    index: int,
    arguments: str,
    call_id: str | None = None,
    name: str | None = None,
    finish: str | None = None,
) -> dict[str, Any]:
    """A chat chunk carrying one `tool_calls` fragment (id and name only in the first)."""
    function: dict[str, Any] = {"arguments": arguments}
    fragment: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    if name is not None:
        function["name"] = name
    chunk = chat_chunk(finish=finish)
    chunk["choices"][0]["delta"]["tool_calls"] = [fragment]
    return chunk


def responses_call_item(call: FakeCall, arguments: str, status: str) -> dict[str, Any]:
    """A Responses `function_call` output item."""
    return {
        "type": "function_call",
        "id": f"fc_{call.call_id}",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def tool_call_events(
    request: Request,
    calls: list[FakeCall],
    piece_chars: int = 3,
    usage: tuple[int, int] = (3, 5),
) -> list[tuple[str | None, dict[str, Any] | str]]:
    """A whole reply asking for `calls`, as (event name, payload) pairs in the endpoint's format.

    Arguments come in pieces of `piece_chars` characters, each call after the
    other, as OpenAI sends them.
    """
    events: list[tuple[str | None, dict[str, Any] | str]] = []

    def pieces(text: str) -> list[str]:
        return [text[i : i + piece_chars] for i in range(0, len(text), piece_chars)]

    if not request.path.endswith("/responses"):
        for index, call in enumerate(calls):
            events.append((None, chat_tool_fragment(index, "", call.call_id, call.name)))
            events += [(None, chat_tool_fragment(index, piece)) for piece in pieces(call.arguments)]
        events.append((None, chat_chunk(finish="tool_calls")))
        events.append((None, chat_usage(*usage)))
        events.append((None, "[DONE]"))
        return events

    def named(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, responses_event(kind, **fields)

    items = []
    for index, call in enumerate(calls):
        item_id = f"fc_{call.call_id}"
        added = responses_call_item(call, "", "in_progress")
        events.append(named("response.output_item.added", output_index=index, item=added))
        for piece in pieces(call.arguments):
            events.append(
                named(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=index,
                    delta=piece,
                )
            )
        events.append(
            named(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                arguments=call.arguments,
            )
        )
        item = responses_call_item(call, call.arguments, "completed")
        items.append(item)
        events.append(named("response.output_item.done", output_index=index, item=item))
    completed = responses_completed(*usage)
    completed["response"]["output"] = items
    events.append(("response.completed", completed))
    return events


async def send_chopped(reply: Reply, body: bytes, rng: random.Random, most: int = 7) -> None:
    """Send a started reply's body in HTTP chunks of 1 to `most` bytes (a read may cut anything)."""
    at = 0
    while at < len(body):
        step = rng.randint(1, most)
        await reply.chunk(body[at : at + step])
        at += step


async def stream_tool_calls(
    request: Request, reply: Reply, calls: list[FakeCall], piece_chars: int = 3
) -> None:
    """Stream a whole reply that asks for `calls`, in the format of the endpoint asked."""
    await reply.start()
    for event, payload in tool_call_events(request, calls, piece_chars):
        await reply.sse(payload, event=event)
    await reply.end()


def trailing_tool_outputs(body: dict[str, Any]) -> list[str]:
    """The texts of the tool outputs after the last user message of a chat or responses request."""
    items = body.get("messages") or body.get("input") or []
    outputs: list[str] = []
    for item in reversed(items):
        if item.get("role") == "user":
            break
        if item.get("role") == "tool" or item.get("type") == "function_call_output":
            output = item.get("content") if item.get("role") == "tool" else item.get("output")
            outputs.append(output if isinstance(output, str) else json.dumps(output))
    return outputs[::-1]


def tool_reply_text(outputs: list[str]) -> str:
    """The final text of the `tool:` scenario, given the outputs it was sent."""
    return "tool said: " + " | ".join(outputs)


async def tool_scenario(request: Request, reply: Reply, arg: str) -> None:
    """`tool:NAMES[:ARGS]`: a call while no output came back, then text holding the outputs."""
    body = request.json()
    outputs = trailing_tool_outputs(body)
    if outputs:
        words = tool_reply_text(outputs).split(" ")
        pieces = (w + " " if i < len(words) - 1 else w for i, w in enumerate(words))
        await stream_reply(request, reply, pieces)
        return
    names, _, arguments = arg.partition(":")
    items = body.get("messages") or body.get("input") or []
    turn = sum(1 for item in items if item.get("role") == "user")
    calls = [
        FakeCall(f"call_{turn}_{number}", name, arguments or "{}")
        for number, name in enumerate(names.split(","), start=1)
    ]
    await stream_tool_calls(request, reply, calls)


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat or responses request."""
    items = body.get("messages") or body.get("input") or []
    for item in reversed(items):
        if item.get("role") == "user":
            content = item.get("content")
            return content if isinstance(content, str) else ""
    return ""


def main() -> None:
    """Serve scenario_handler until killed; print the base URL first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def run() -> None:
        async with FakeOpenAI(port=args.port) as server:
            print(server.base_url, flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
