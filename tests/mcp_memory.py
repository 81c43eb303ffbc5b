"""The official SDK's ClientSession against `convmgr mcp`'s session (mcp_app.serve_mcp), in memory.

What the SDK's stdio_client does with a process's pipes, done with a memory
pipe: each message the session sends is one JSON line to the server, and each
line the server writes is parsed as the SDK parses it. Every line is recorded
(WireLog), and `mcp_session` checks them all strictly when the session ends.
The MCP dialect's behaviour is tested here, fast; tests/test_mcp_stdio.py runs
the same client against the real process.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.shared.message import SessionMessage
from mcp_wire_check import WireLog

from convmgr.app import ServeOptions
from convmgr.core.tools import ToolLimits
from convmgr.jsonrpc.transport import MemoryByteStream, memory_pipe
from convmgr.mcp_app import serve_mcp
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore
from convmgr.tools.mcp import McpHub

TIMEOUT = 20.0


class Bridge:
    """Lines between a memory pipe's client end and a ClientSession's message streams."""

    def __init__(self, end: MemoryByteStream, log: WireLog) -> None:
        self.end = end
        self.log = log
        self.read_writer, self.read_stream = anyio.create_memory_object_stream[
            SessionMessage | Exception
        ](0)
        self.write_stream, self.write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def to_server(self) -> None:
        """The session's messages, one line each; end of input when it closes."""
        async with self.write_reader:
            async for message in self.write_reader:
                text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                self.log.add("<", text)
                await self.end.send(text.encode() + b"\n")
        self.end.close_output()

    async def from_server(self) -> None:
        """The server's lines, parsed as the SDK's stdio transport parses them."""
        buffer = b""
        async with self.read_writer:
            while chunk := await self.end.receive():
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    text = line.decode()
                    self.log.add(">", text)
                    parsed = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                    try:
                        await self.read_writer.send(SessionMessage(parsed))
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return


@asynccontextmanager
async def mcp_session(
    store: ConversationStore | None = None,
    *,
    providers: ProviderRegistry | None = None,
    hub: McpHub | None = None,
    tools_page: int | None = None,
    resources_page: int | None = None,
    initialize: bool = True,
    **client: Any,
) -> AsyncIterator[tuple[ClientSession, WireLog]]:
    """A ClientSession on an in-memory `convmgr mcp` (MemoryStore and echo unless given).

    `client` goes to ClientSession (elicitation_callback=..., say). On leaving,
    the session's input ends and the server must end by itself; then every
    line it wrote is checked against the official types.
    """
    store = MemoryStore() if store is None else store
    await store.open()
    server_end, client_end = memory_pipe(8)
    log = WireLog()
    bridge = Bridge(client_end, log)
    ended = anyio.Event()

    async def serve() -> None:
        try:
            await serve_mcp(
                server_end,
                store,
                providers or ProviderRegistry.echo_only(),
                options=ServeOptions(drain_timeout=TIMEOUT),
                hub=hub,
                tool_limits=ToolLimits(),
                tools_page=tools_page,
                resources_page=resources_page,
            )
        finally:
            server_end.close_output()
            ended.set()

    with anyio.fail_after(TIMEOUT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            tg.start_soon(bridge.to_server)
            tg.start_soon(bridge.from_server)
            async with ClientSession(bridge.read_stream, bridge.write_stream, **client) as session:
                if initialize:
                    await session.initialize()
                yield session, log
            bridge.write_stream.close()
            await ended.wait()
    log.check()


class RawMcp:
    """The client end as plain JSON lines, for what the SDK will not send (bad params, say)."""

    def __init__(self, end: MemoryByteStream, log: WireLog) -> None:
        self.end = end
        self.log = log
        self._buffer = b""
        self._ids = iter(range(1, 1 << 30))

    async def send(self, message: dict[str, Any]) -> None:
        """One message, as one line."""
        text = json.dumps(message)
        self.log.add("<", text)
        await self.end.send(text.encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        """The next message the server wrote."""
        with anyio.fail_after(TIMEOUT):
            while b"\n" not in self._buffer:
                chunk = await self.end.receive()
                assert chunk, "the server ended its output"
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.log.add(">", line.decode())
        message: dict[str, Any] = json.loads(line)
        return message

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request and return the response to it (the whole message)."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            answer = await self.receive()
            if answer.get("id") == msg_id and "method" not in answer:
                return answer

    async def initialize(self, version: str = "2025-11-25", **capabilities: Any) -> dict[str, Any]:
        """The handshake; the initialize result."""
        response = await self.request(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": capabilities,
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        result: dict[str, Any] = response["result"]
        return result


@asynccontextmanager
async def raw_session(store: ConversationStore | None = None) -> AsyncIterator[RawMcp]:
    """An in-memory `convmgr mcp` driven line by line; every line it wrote is checked at the end."""
    store = MemoryStore() if store is None else store
    await store.open()
    server_end, client_end = memory_pipe(8)
    raw = RawMcp(client_end, WireLog())
    with anyio.fail_after(TIMEOUT * 2):
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                try:
                    await serve_mcp(
                        server_end,
                        store,
                        ProviderRegistry.echo_only(),
                        options=ServeOptions(drain_timeout=TIMEOUT),
                    )
                finally:
                    server_end.close_output()

            tg.start_soon(serve)
            yield raw
            client_end.close_output()
            while chunk := await client_end.receive():
                raw._buffer += chunk
    for line in raw._buffer.split(b"\n"):
        if line:
            raw.log.add(">", line.decode())
    raw.log.check()
