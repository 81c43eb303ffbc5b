"""MCP servers as tool sources, through the official MCP SDK's client (imported on first need).

The hub starts each configured server the first time a turn asks for its tools,
in a task of the hub's own task group that holds the SDK's stdio_client and
ClientSession for the server's life (anyio wants a context exited by the task
that entered it); see convmgr/tools/mcp_connection.py for the SDK side.
"""

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from convmgr.model import McpServerSettings, ToolOutcome
from convmgr.tools.names import model_names

if TYPE_CHECKING:
    from convmgr.tools.mcp_connection import Connection

# A server that fails to start or dies is started again on a later tools()
# call, this many times in all per hub; then the hub gives up on it.
MAX_STARTS = 3
_CONNECTION_MODULE = "convmgr.tools.mcp_connection"


@dataclass(frozen=True, slots=True)
class McpTool:
    """A tool one MCP server offers, under the name the model sees."""

    server: str
    # The server's own name for it.
    tool: str
    # SERVER__TOOL cut to [A-Za-z0-9_-] and 64 characters.
    name: str
    description: str
    input_schema: dict[str, Any]
    # The hub's key of the server when it is not `server`: a conversation's own (add_servers).
    key: str | None = None


@dataclass(eq=False, slots=True)
class _Server:
    """A configured server: its current connection and how often it was started."""

    settings: McpServerSettings
    starts: int = 0
    connection: "Connection | None" = None
    # Whether a tools() call has reported the current connection's end.
    end_reported: bool = False


class McpHub:
    """The MCP servers: each started on first need and kept for the hub's life.

    `servers` are the configured ones, shared by every conversation. A
    conversation may bring servers of its own (ACP's `session/new.mcpServers`):
    add_servers keeps them under keys of their own, "OWNER:NAME", that no
    configured name can equal, until remove_servers ends them.
    """

    def __init__(self, servers: Mapping[str, McpServerSettings]) -> None:
        self.servers = dict(servers)
        self._state = {name: _Server(settings) for name, settings in self.servers.items()}
        # The keys of each owner's own servers.
        self._owned: dict[str, list[str]] = {}
        self._group: TaskGroup | None = None
        self._closed = False

    def settings(self, key: str) -> McpServerSettings:
        """The settings of a configured server, or of an owner's own by its key."""
        return self._state[key].settings

    def add_servers(self, owner: str, servers: Sequence[McpServerSettings]) -> tuple[str, ...]:
        """Servers of one owner (a conversation): their keys; any it had before are ended.

        Each starts on first need, like a configured one. The model sees its
        tools as NAME__TOOL (its own name), whoever else has a server so named.
        """
        self.remove_servers(owner)
        keys: list[str] = []
        for settings in servers:
            key = f"{owner}:{settings.name}"
            n = 1
            while key in self._state:
                n += 1
                key = f"{owner}:{settings.name}#{n}"
            self._state[key] = _Server(settings)
            keys.append(key)
        if keys:
            self._owned[owner] = keys
        return tuple(keys)

    def remove_servers(self, owner: str) -> None:
        """End an owner's own servers and forget them."""
        for key in self._owned.pop(owner, ()):
            server = self._state.pop(key)
            if server.connection is not None:
                server.connection.stop()

    async def __aenter__(self) -> "McpHub":
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # Every server stops at once (each closes its stdin, then the SDK's
        # terminate), so the whole exit takes as long as the slowest one.
        self._closed = True
        for server in self._state.values():
            if server.connection is not None:
                server.connection.stop()
        group, self._group = self._group, None
        if group is None:
            return None
        return await group.__aexit__(exc_type, exc, tb)

    async def tools(self, servers: Sequence[str]) -> tuple[list[McpTool], list[tuple[str, str]]]:
        """The tools of these servers, starting any not running; and (server, message) failures."""
        if servers and _CONNECTION_MODULE not in sys.modules:
            # Importing the SDK takes ~1 s of CPU here; in a thread, the event
            # loop (every other conversation's stream) keeps running meanwhile.
            import anyio.to_thread  # only once a server is started: start-up does not pay

            await anyio.to_thread.run_sync(importlib.import_module, _CONNECTION_MODULE)
        picked = [(name, self._connection(name)) for name in dict.fromkeys(servers)]
        listed: list[tuple[str, str, str, dict[str, Any]]] = []
        failures: list[tuple[str, str]] = []
        for name, connection in picked:
            if isinstance(connection, str):
                failures.append((name, connection))
                continue
            await connection.ready.wait()
            if not connection.live:
                # It failed to start, or ended since; its reason is set once it has ended.
                await connection.ended.wait()
                server = self._state.get(name)
                if server is not None and server.connection is connection:
                    server.end_reported = True
                failures.append((name, _failure(connection, with_start=True)))
                continue
            listed.extend(
                (name, tool.name, tool.description or "", tool.input_schema)
                for tool in connection.tools
            )
        shown = [self._shown(key) for key, _, _, _ in listed]
        pairs = [(server, tool) for server, (_, tool, _, _) in zip(shown, listed, strict=True)]
        # A server's own key tells two servers of one name apart (configured keys are names).
        identities = [
            None if key == server else f"{key}/{tool}"
            for server, (key, tool, _, _) in zip(shown, listed, strict=True)
        ]
        names = model_names(pairs, identities)
        tools = [
            McpTool(server, tool, name, description, schema, None if key == server else key)
            for name, server, (key, tool, description, schema) in zip(
                names, shown, listed, strict=True
            )
        ]
        return tools, [(self._shown(key), message) for key, message in failures]

    def _shown(self, key: str) -> str:
        """The name clients and the model see for a server: a configured one's key, else its own."""
        server = self._state.get(key)
        if key in self.servers or server is None:
            return key
        return server.settings.name

    def _connection(self, name: str) -> "Connection | str":
        """The server's connection, started if it needs to be; or why there is none."""
        if self._group is None or self._closed:
            return "the MCP hub is not open"
        server = self._state.get(name)
        if server is None:
            return "no MCP server of that name is configured"
        connection = server.connection
        if connection is not None and not connection.ended.is_set():
            return connection
        if connection is not None and not server.end_reported:
            # Its end is reported once before it is started again.
            return connection
        if server.starts >= MAX_STARTS:
            last = f": {_failure(connection)}" if connection is not None else ""
            return f"gave up after {MAX_STARTS} starts{last}"
        # Imported by tools() already (it imports the SDK).
        from convmgr.tools.mcp_connection import Connection

        server.starts += 1
        connection = Connection(server.settings, server.starts)
        server.connection, server.end_reported = connection, False
        self._group.start_soon(connection.run, name=f"MCP server {name}")
        return connection

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        """Call a tool; a failure (the server's or its death) is a failed outcome, not an error."""
        server = self._state.get(tool.key or tool.server)
        connection = server.connection if server is not None else None
        if connection is None or not connection.live:
            reason = f": {_failure(connection)}" if connection and connection.failure else ""
            return ToolOutcome(f"MCP server {tool.server!r} is not running{reason}", is_error=True)
        return await connection.call(tool.tool, arguments)


def _failure(connection: "Connection", *, with_start: bool = False) -> str:
    """Why a server's connection ended (or never started), with its last stderr line."""
    text = connection.failure
    if with_start:
        text = f"{text} (start {connection.attempt} of {MAX_STARTS})"
    if connection.stderr_tail:
        text = f"{text}; stderr: {connection.stderr_tail}"
    return text
