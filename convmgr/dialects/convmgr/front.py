"""The convmgr dialect as app.serve wires it: client channel, event sink, method table."""

from convmgr.core.manager import ConversationManager
from convmgr.dialects.convmgr.client import ConnectionClient
from convmgr.dialects.convmgr.errors import ConvmgrCode
from convmgr.dialects.convmgr.handlers import Server
from convmgr.dialects.convmgr.notifications import EventWriter
from convmgr.jsonrpc.connection import Connection
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore


class ConvmgrFront:
    """One convmgr-dialect session's parts, sharing the connection."""

    too_large_code = int(ConvmgrCode.OVERLOADED)
    cancel_form = ("$/cancelRequest", "id")
    # Only the configured MCP servers: no hub unless the configuration names one.
    own_mcp_servers = False

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.client = ConnectionClient(conn)
        self.sink = EventWriter(conn.outbound)

    def bind(
        self, manager: ConversationManager, providers: ProviderRegistry, store: ConversationStore
    ) -> Server:
        """The method table over the manager (it registers itself on the connection)."""
        return Server(self.conn, manager, providers, store, self.client)
