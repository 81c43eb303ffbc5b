"""`convmgr mcp`: the MCP dialect's session, in the process that app.py wires for `serve`.

Same configuration, store, providers, MCP tool sources, signals and drain as
`convmgr serve` (app.run_server); only the session differs: a Connection with
MCP's conventions (a cancelled request is not answered, `notifications/cancelled`
gives up a request of ours) and the MCP dialect's method table and event sink.
"""

import argparse

import anyio

from convmgr.app import ServeOptions, Session, serve_stdio
from convmgr.core.manager import ConversationManager
from convmgr.core.tools import Toolbox, ToolLimits
from convmgr.dialects.mcp.client import ElicitingClient
from convmgr.dialects.mcp.server import McpServer
from convmgr.dialects.mcp.turns import TurnEvents
from convmgr.jsonrpc.connection import Connection
from convmgr.jsonrpc.framing import Framing
from convmgr.jsonrpc.transport import ByteStream
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.tools.mcp import McpHub

_TERMINAL_HINT = (
    "convmgr mcp: an MCP server on stdin/stdout, for an MCP host to spawn: add\n"
    '  {"command": "convmgr", "args": ["mcp"]}\n'
    "to its mcpServers. Ctrl-D ends the session; `convmgr mcp --help` says more.\n"
)


async def serve_mcp(
    stream: ByteStream,
    store: ConversationStore,
    providers: ProviderRegistry,
    *,
    framing: Framing | None = None,
    max_message_bytes: int = 16 << 20,
    max_conversations: int | None = None,
    options: ServeOptions | None = None,
    signals: bool = False,
    hub: McpHub | None = None,
    tool_limits: ToolLimits | None = None,
    tools_page: int | None = None,
    resources_page: int | None = None,
) -> None:
    """One MCP session over `stream` on an open store, to its end (as app.serve)."""
    conn = Connection(
        stream,
        framing=framing,
        max_message_bytes=max_message_bytes,
        answer_cancelled=False,
        cancel_form=("notifications/cancelled", "requestId"),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.outbound.run)
        client = ElicitingClient(conn)
        events = TurnEvents(conn.outbound)
        toolbox = Toolbox(client, hub, tool_limits)
        async with ConversationManager(
            store, providers, events, max_conversations=max_conversations, toolbox=toolbox
        ) as manager:
            server = McpServer(
                conn,
                manager,
                providers,
                client,
                events,
                tools_page=tools_page,
                resources_page=resources_page,
            )
            session = Session(conn, manager, server, store, options or ServeOptions())
            if signals:
                tg.start_soon(session.watch_signals)
            tg.start_soon(session.watch_output)
            tg.start_soon(session.read_until_eof, tg)
            await session.stop.wait()
            await session.finish()
        tg.cancel_scope.cancel()


def serve_mcp_stdio(args: argparse.Namespace) -> int:
    """Run `convmgr mcp` on this process's stdin/stdout; the exit status."""
    return serve_stdio(args, serve_mcp, _TERMINAL_HINT)
