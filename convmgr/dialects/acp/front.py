"""The ACP dialect as app.serve wires it: client channel, event sink, method table."""

from convmgr.core.manager import ConversationManager
from convmgr.dialects.acp.client import AcpClient
from convmgr.dialects.acp.handlers import Server
from convmgr.dialects.acp.notifications import SessionUpdates
from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.connection import Connection
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore


class AcpFront:
    """One ACP session's parts, sharing the connection."""

    # ACP defines no code for it: a result over --max-message-bytes is an internal error.
    too_large_code = int(ErrorCode.INTERNAL_ERROR)
    cancel_form = ("$/cancel_request", "requestId")
    # Clients pass MCP servers of their own in session/new: the hub is needed even empty.
    own_mcp_servers = True

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.client = AcpClient(conn)
        self.sink = SessionUpdates(conn.outbound)

    def bind(
        self, manager: ConversationManager, providers: ProviderRegistry, store: ConversationStore
    ) -> Server:
        """The method table over the manager (it registers itself on the connection)."""

        def window_of(session_id: str) -> int | None:
            conv = manager.loaded(session_id)
            if conv is None:
                return None
            for provider in providers.all():
                if provider.name == conv.record.provider:
                    return provider.context_window
            return None

        self.sink.window_of = window_of
        return Server(self.conn, manager, store, self.client, self.sink)
