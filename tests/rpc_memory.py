"""tests/client.py's client, in memory: a whole session (app.serve) over a memory pipe.

`session()` runs the real wiring — Connection, the convmgr dialect's Server,
a ConversationManager on a store (MemoryStore unless given) with the echo
provider — in the test's own event loop, and yields a MemoryClient that talks
to it as a client process would: framed bytes in, framed bytes out. The pipe
holds a few chunks, as a real one does, and the client reads only when asked,
so a streaming turn cannot run far ahead of the test. Every message read is
checked as tests/client.py checks it. Timeouts are failure guards only;
nothing waits for time to pass.
"""

import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from client import TERMINAL, Checker, ServerClosed, encode, is_from_server, split_frames

from convmgr.app import ServeOptions, serve
from convmgr.core.tools import ToolLimits
from convmgr.jsonrpc.transport import MemoryByteStream, memory_pipe
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore
from convmgr.tools.mcp import McpHub

Message = dict[str, Any]
TIMEOUT = 20.0
PIPE_CHUNKS = 4


class MemoryClient(Checker):
    """The client end of an in-memory session; the API of client.Client, awaited."""

    def __init__(self, stream: MemoryByteStream, *, framing: str, validate: bool) -> None:
        super().__init__(validate=validate)
        self.framing = framing
        self._stream = stream
        self._ids = itertools.count(1)
        self._buf = bytearray()
        self._inbox: deque[Any] = deque()
        self.responses: dict[Any, Message] = {}
        self.notifications: list[Message] = []
        self.batches: list[list[Message]] = []
        # Server requests and the server's $/cancelRequest notifications, in order;
        # `answer`, when set, answers each request as it is read.
        self.from_server: list[Message] = []
        self.answer: Callable[[Message], Any] | None = None
        self.eof = False
        self.input_closed = False
        self.ended = anyio.Event()  # the session (serve) returned

    # --- writing ----------------------------------------------------------------

    def next_id(self) -> int:
        """A fresh integer request id."""
        return next(self._ids)

    async def send(self, obj: Any) -> None:
        """Write one message (or a batch), framed."""
        self._remember(obj)
        await self.send_raw(encode(obj, self.framing))

    async def send_many(self, objs: Iterable[Any]) -> None:
        """Write many messages in one chunk (the server reads them as one batch)."""
        chunks = []
        for obj in objs:
            self._remember(obj)
            chunks.append(encode(obj, self.framing))
        await self.send_raw(b"".join(chunks))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are."""
        await self._stream.send(data)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        msg: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)

    def stop_reading(self) -> None:
        """Close the client's side of the server's output (a closed stdout)."""
        self._stream.close_input()

    def close_input(self) -> None:
        """End of input for the server (a closed stdin)."""
        if not self.input_closed:
            self.input_closed = True
            self._stream.close_output()

    # --- reading ------------------------------------------------------------------

    async def read_message(self, timeout: float = TIMEOUT) -> Any:
        """The next message the server wrote, checked (server requests aside, see Client)."""
        with anyio.fail_after(timeout):
            while True:
                msg = await self._read_one(timeout)
                if not is_from_server(msg):
                    return msg
                self.from_server.append(msg)
                if self.answer is not None and "id" in msg:
                    reply = self.answer(msg)
                    if reply is not None:
                        await self.send(reply)

    async def server_request(self, timeout: float = TIMEOUT) -> Message:
        """The next server request or `$/cancelRequest` (what is read meanwhile is kept)."""
        with anyio.fail_after(timeout):
            while not self.from_server:
                msg = await self._read_one(timeout)
                if is_from_server(msg):
                    self.from_server.append(msg)
                else:
                    self._keep(msg)
        return self.from_server.pop(0)

    async def _read_one(self, timeout: float) -> Any:
        if self.eof:
            raise ServerClosed("the server closed its output")
        with anyio.fail_after(timeout):
            while not self._inbox:
                data = await self._stream.receive()
                if not data:
                    self.eof = True
                    assert not self._buf, f"output ended inside a message: {self._buf[:200]!r}"
                    raise ServerClosed("the server closed its output")
                self._buf += data
                del self._buf[: split_frames(self._buf, self.framing, self._inbox.append)]
        item = self._inbox.popleft()
        self.check(item)
        return item

    async def discard_until_eof(self) -> None:
        """Read whatever is left, unchecked, until the server closes its output."""
        self._inbox.clear()
        while await self._stream.receive():
            pass
        self.eof = True

    async def read_until_eof(self, timeout: float = TIMEOUT) -> list[Any]:
        """Every message until the server closes its output."""
        out = []
        with anyio.fail_after(timeout):
            while True:
                try:
                    out.append(await self.read_message(timeout))
                except ServerClosed:
                    return out

    async def expect_eof(self, timeout: float = TIMEOUT) -> None:
        """The server closes its output next, with nothing more written."""
        rest = await self.read_until_eof(timeout)
        assert rest == [], f"unexpected messages before end of output: {rest[:5]}"

    def _keep(self, msg: Any) -> None:
        if isinstance(msg, list):
            self.batches.append(msg)
        elif "method" in msg:
            self.notifications.append(msg)
        else:
            self.responses[msg["id"]] = msg

    async def response(self, msg_id: Any, timeout: float = TIMEOUT) -> Message:
        """The response with this id; what is read meanwhile is kept (see client.Client)."""
        if msg_id in self.responses:
            return self.responses.pop(msg_id)
        with anyio.fail_after(timeout):
            while True:
                msg = await self.read_message(timeout)
                if (
                    isinstance(msg, dict)
                    and "method" not in msg
                    and msg["id"] == msg_id
                    and type(msg["id"]) is type(msg_id)
                ):
                    return msg
                self._keep(msg)

    async def request(
        self, method: str, params: Any = None, *, msg_id: Any = ..., timeout: float = TIMEOUT
    ) -> Message:
        """Send a request and return its whole response."""
        if msg_id is ...:
            msg_id = self.next_id()
        msg: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        return await self.response(msg_id, timeout)

    async def result(self, method: str, params: Any = None, **kw: Any) -> Any:
        """Send a request; its result (fails on an error response)."""
        response = await self.request(method, params, **kw)
        assert "result" in response, f"{method} failed: {response}"
        return response["result"]

    async def error(self, method: str, params: Any = None, **kw: Any) -> Message:
        """Send a request that must fail; its error object."""
        response = await self.request(method, params, **kw)
        assert "error" in response, f"{method} should have failed: {response}"
        return response["error"]

    def events(self, conversation_id: str | None = None) -> list[Message]:
        """The event params kept so far, optionally of one conversation."""
        return [
            n["params"]
            for n in self.notifications
            if conversation_id is None or n["params"]["conversationId"] == conversation_id
        ]

    async def wait_event(
        self, conversation_id: str, event_type: str, timeout: float = TIMEOUT
    ) -> Message:
        """Read until that conversation's next event of that type (kept ones first, consumed)."""
        for index, n in enumerate(self.notifications):
            p = n["params"]
            if p["conversationId"] == conversation_id and p["event"]["type"] == event_type:
                del self.notifications[: index + 1]
                return p
        self.notifications.clear()
        with anyio.fail_after(timeout):
            while True:
                msg = await self.read_message(timeout)
                if isinstance(msg, dict) and "method" in msg:
                    p = msg["params"]
                    if p["conversationId"] == conversation_id and p["event"]["type"] == event_type:
                        return p
                else:
                    self._keep(msg)

    async def collect_turn(self, conversation_id: str, timeout: float = TIMEOUT) -> list[Message]:
        """Event params of the conversation up to its next terminal event (kept ones first)."""
        out: list[Message] = []
        kept, self.notifications = self.notifications, []
        pending = iter(kept)
        with anyio.fail_after(timeout):
            while True:
                msg = next(pending, None)
                if msg is None:
                    msg = await self.read_message(timeout)
                if isinstance(msg, list) or "method" not in msg:
                    self._keep(msg)
                    continue
                p = msg["params"]
                if p["conversationId"] != conversation_id:
                    self.notifications.append(msg)
                    continue
                out.append(p)
                if p["event"]["type"] in TERMINAL:
                    self.notifications.extend(pending)
                    return out


@asynccontextmanager
async def session(
    store: ConversationStore | None = None,
    *,
    framing: str = "ndjson",
    server_framing: str | None = None,
    max_message_bytes: int = 16 << 20,
    max_conversations: int | None = None,
    validate: bool = True,
    open_store: bool = True,
    providers: ProviderRegistry | None = None,
    hub: McpHub | None = None,
    tool_limits: ToolLimits | None = None,
) -> AsyncIterator[MemoryClient]:
    """A session served in memory (as `convmgr --no-store` unless a store is given).

    On leaving, the client's input is closed (if the test did not) and the
    session must end by itself, as at end of stdin.
    """
    store = MemoryStore() if store is None else store
    if open_store:
        await store.open()
    server_end, client_end = memory_pipe(PIPE_CHUNKS)
    client = MemoryClient(client_end, framing=framing, validate=validate)

    async def run() -> None:
        try:
            await serve(
                server_end,
                store,
                providers or ProviderRegistry.echo_only(),
                framing=server_framing,  # type: ignore[arg-type]
                max_message_bytes=max_message_bytes,
                max_conversations=max_conversations,
                options=ServeOptions(drain_timeout=TIMEOUT),
                hub=hub,
                tool_limits=tool_limits,
            )
        finally:
            # As a process's exit closes its stdout.
            server_end.close_output()
            client.ended.set()

    with server_end, client_end:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            yield client
            client.close_input()
            with anyio.fail_after(TIMEOUT):
                if not client.eof:
                    await client.discard_until_eof()
                await client.ended.wait()
