"""The ACP dialect's method table: ACP requests to manager calls (docs/protocol.md §15).

Each handler checks its params and returns its result, or Work naming the
session it orders on (as in the convmgr dialect, so nothing about a session
goes out before the answer that created it). `session/prompt` starts the turn
in order, then frees the session's key and is answered when the turn ends
(Later): a cancel, or a second prompt (refused: busy), goes ahead meanwhile.
"""

import logging
import os
from collections.abc import Callable
from typing import Any

import anyio

from convmgr import __version__
from convmgr.core.manager import ConversationManager
from convmgr.dialects.acp.checks import (
    PROTOCOL_VERSION,
    ClientInfo,
    NewSession,
    invalid,
    parse,
    read_initialize,
    read_new_session,
    read_prompt,
    read_session,
    schema,
    validation_error,
)
from convmgr.dialects.acp.client import AcpClient
from convmgr.dialects.acp.notifications import PendingPrompt, SessionUpdates
from convmgr.dialects.acp.translate import editor_tools, replay_updates
from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.connection import Connection, Later, Work, internal_error
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.messages import valid_id
from convmgr.model import (
    ConversationBusy,
    ConversationError,
    ConversationExists,
    ConversationLocked,
    ConversationNotFound,
    ConversationRecord,
    ConversationSettings,
    InvalidArgument,
    Overloaded,
    StorageFailed,
    TurnSettings,
)
from convmgr.store.base import ConversationStore

log = logging.getLogger(__name__)

# ACP's "resource not found" (its error codes beyond JSON-RPC's).
RESOURCE_NOT_FOUND = -32002
# Sessions read from the store per page while filling one `session/list` page.
_LIST_PAGE = 100
# History items read per step while replaying it for `session/load`.
_REPLAY_CHUNK = 512

_REASONS: dict[type[ConversationError], tuple[int, str]] = {
    ConversationNotFound: (RESOURCE_NOT_FOUND, "not_found"),
    ConversationBusy: (ErrorCode.INVALID_REQUEST, "busy"),
    ConversationExists: (ErrorCode.INVALID_REQUEST, "exists"),
    ConversationLocked: (ErrorCode.INVALID_REQUEST, "locked"),
    Overloaded: (ErrorCode.INVALID_REQUEST, "overloaded"),
    InvalidArgument: (ErrorCode.INVALID_PARAMS, "invalid_params"),
}


def rpc_error(exc: Exception) -> RpcError:
    """The JSON-RPC error for what a handler or its work raised: ACP's codes, `data.reason`."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, StorageFailed):
        return RpcError(ErrorCode.INTERNAL_ERROR, exc.message, {"reason": exc.reason})
    if isinstance(exc, ConversationError):
        code, reason = _REASONS.get(type(exc), (ErrorCode.INTERNAL_ERROR, "internal"))
        data: dict[str, Any] = {"reason": reason}
        for key, value in (exc.data or {}).items():
            data["sessionId" if key == "conversationId" else key] = value
        message = exc.message.replace("conversation", "session", 1)
        if code == RESOURCE_NOT_FOUND:
            message = f"Resource not found: {message}"
        return RpcError(code, message, data)
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return validation_error(exc)
    error = internal_error(exc)
    return RpcError(error.code, error.message, {"reason": "internal"})


class Server:
    """Binds ACP's methods to a ConversationManager over a Connection."""

    def __init__(
        self,
        connection: Connection,
        manager: ConversationManager,
        store: ConversationStore,
        client: AcpClient,
        updates: SessionUpdates,
    ) -> None:
        self.conn = connection
        self.manager = manager
        self.store = store
        self.client = client
        self.updates = updates
        self.info = ClientInfo(PROTOCOL_VERSION)
        self.initialized = False
        # Set when the session stops (app.Session); ACP itself has no shutdown or exit.
        self.shut_down = False
        self.exit_requested = anyio.Event()
        self._register()

    def _register(self) -> None:
        table: dict[str, Callable[[Any], Any]] = {
            "initialize": self.initialize,
            "session/new": self.new_session,
            "session/load": self.load_session,
            "session/resume": self.resume_session,
            "session/fork": self.fork_session,
            "session/list": self.list_sessions,
            "session/close": self.close_session,
            "session/delete": self.delete_session,
            "session/prompt": self.prompt,
            # A method, not a plain notification: it is applied in order with the session's
            # other requests (a cancel right behind a prompt finds its turn started).
            "session/cancel": self.cancel,
        }
        for name, handler in table.items():
            self.conn.method(name, self._guard(handler))
        self.conn.map_errors(rpc_error)
        self.conn.notification("$/cancel_request", self._cancel_request)

    def _guard(self, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def guarded(params: Any) -> Any:
            if self.shut_down:
                raise RpcError(
                    ErrorCode.INVALID_REQUEST, "the server is stopping", {"reason": "shutdown"}
                )
            return handler(params)

        return guarded

    def _cancel_request(self, params: Any) -> None:
        target = params.get("requestId") if isinstance(params, dict) else None
        if target is None or not valid_id(target):
            log.warning("ignoring $/cancel_request without a valid requestId")
            return
        self.conn.cancel(target)

    async def warm_up(self) -> None:
        """Nothing to build ahead: the hot requests need no models (see checks.py)."""

    # --- lifecycle ------------------------------------------------------------------------

    def initialize(self, params: Any) -> Any:
        """`initialize`: protocol version 1 whatever the client asks; capabilities as they are."""
        info = read_initialize(params)
        if self.initialized:
            raise RpcError(
                ErrorCode.INVALID_REQUEST,
                "initialize was already done",
                {"reason": "already_initialized"},
            )
        self.initialized = True
        self.info = info
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "agentCapabilities": {
                "loadSession": True,
                "promptCapabilities": {"image": False, "audio": False, "embeddedContext": True},
                "mcpCapabilities": {"http": False, "sse": False},
                "sessionCapabilities": {
                    "list": {},
                    "fork": {},
                    "resume": {},
                    "close": {},
                    "delete": {},
                },
            },
            "authMethods": [],
            "agentInfo": {"name": "convmgr", "title": "convmgr", "version": __version__},
        }

    # --- sessions -------------------------------------------------------------------------

    def _tools(self) -> list[dict[str, Any]]:
        info = self.info
        return editor_tools(info.read_text_file, info.write_text_file, info.terminal)

    def _opened(self, record: ConversationRecord, session: NewSession) -> None:
        """A session is loaded here: its own MCP servers and its cwd for the editor's tools."""
        sid = record.conversation_id
        self.manager.attach_mcp_servers(sid, session.mcp_servers)
        self.client.cwds[sid] = session.cwd

    def new_session(self, params: Any) -> Any:
        """`session/new`: a conversation with the editor's tools, cwd kept."""
        session = read_new_session(params)
        sid = self.manager.new_id()
        settings = ConversationSettings(cwd=session.cwd, tools=self._tools() or None)

        async def work() -> Any:
            record = await self.manager.new_conversation(sid, settings)
            self._opened(record, session)
            return {"sessionId": sid}

        return Work(work, (sid,))

    def _overrides(self, session: NewSession) -> ConversationSettings:
        # The tools are this client's: a session made elsewhere gets them (or loses others).
        return ConversationSettings(cwd=session.cwd, tools=self._tools())

    def load_session(self, params: Any) -> Any:
        """`session/load`: resumed, then its whole history replayed before the answer."""
        session = read_session("LoadSessionRequest", params)
        sid = session.session_id or ""

        async def work() -> Any:
            record = await self.manager.resume_conversation(sid, self._overrides(session))
            self._opened(record, session)
            await self._replay(sid)
            return {}

        return Work(work, (sid,))

    async def _replay(self, sid: str) -> None:
        offset = 0
        outbound = self.conn.outbound
        while True:
            items = await self.manager.read_history(sid, offset, _REPLAY_CHUNK)
            for update in replay_updates(items):
                if outbound.congested():
                    await outbound.wait_ready()
                self.updates.send(sid, update)
            if len(items) < _REPLAY_CHUNK:
                return
            offset += len(items)

    def resume_session(self, params: Any) -> Any:
        """`session/resume`: as load, without the replay."""
        session = read_session("ResumeSessionRequest", params)
        sid = session.session_id or ""

        async def work() -> Any:
            record = await self.manager.resume_conversation(sid, self._overrides(session))
            self._opened(record, session)
            return {}

        return Work(work, (sid,))

    def fork_session(self, params: Any) -> Any:
        """`session/fork`: a new session with the whole history."""
        session = read_session("ForkSessionRequest", params)
        source = session.session_id or ""
        new_id = self.manager.new_id()

        async def work() -> Any:
            record = await self.manager.fork_conversation(
                source, None, 0, self._overrides(session), new_id
            )
            self._opened(record, session)
            return {"sessionId": new_id}

        return Work(work, (source, new_id))

    def list_sessions(self, params: Any) -> Any:
        """`session/list`: newest first; `cwd` filters by exact match."""
        request = parse(schema().ListSessionsRequest, params)
        here = os.getcwd()

        async def work() -> Any:
            cursor = request.cursor
            sessions: list[dict[str, Any]] = []
            while True:
                try:
                    views, cursor = await self.manager.list_conversations(cursor, _LIST_PAGE)
                except ValueError as exc:
                    raise invalid(f"cursor: {exc}", "cursor") from None
                for view in views:
                    record = view.record
                    cwd = record.settings.cwd or here
                    if request.cwd is not None and cwd != request.cwd:
                        continue
                    info: dict[str, Any] = {
                        "sessionId": record.conversation_id,
                        "cwd": cwd,
                        "updatedAt": record.updated_at,
                    }
                    if record.preview:
                        info["title"] = record.preview
                    sessions.append(info)
                # A filtered page may come up short: read on until there is something to show.
                if sessions or cursor is None:
                    break
            result: dict[str, Any] = {"sessions": sessions}
            if cursor is not None:
                result["nextCursor"] = cursor
            return result

        return Work(work)

    def close_session(self, params: Any) -> Any:
        """`session/close`: unloaded (its turn aborted, its own MCP servers ended), kept."""
        sid = parse(schema().CloseSessionRequest, params).session_id

        async def work() -> Any:
            if not await self.manager.remove_conversation(sid, False):
                await self.manager.get_conversation(sid)  # not found: -32002
            self.client.cwds.pop(sid, None)
            return {}

        return Work(work, (sid,))

    def delete_session(self, params: Any) -> Any:
        """`session/delete`: closed if need be, and its history deleted."""
        sid = parse(schema().DeleteSessionRequest, params).session_id

        async def work() -> Any:
            if not await self.manager.remove_conversation(sid, True):
                raise ConversationNotFound(sid)
            self.client.cwds.pop(sid, None)
            return {}

        return Work(work, (sid,))

    # --- turns ----------------------------------------------------------------------------

    def prompt(self, params: Any) -> Any:
        """`session/prompt`: a turn; answered with its stopReason when it ends."""
        sid, text = read_prompt(params)

        def start() -> Any:
            turn_id = self.manager.send_user_turn(sid, [text], TurnSettings())
            # Before the turn's task can run: this returns without awaiting.
            pending = self.updates.expect(sid, turn_id)
            return Later(self._answer(sid, pending))

        return Work(start, (sid,))

    async def _answer(self, sid: str, pending: PendingPrompt) -> Any:
        try:
            await pending.done.wait()
        except BaseException:
            # The request was cancelled ($/cancel_request, or the server stopping): so is its
            # turn, and the answer waits for its end, so a prompt right after it is not busy.
            self.updates.forget(sid, pending)
            conv = self.manager.loaded(sid)
            turn = conv.turn if conv is not None else None
            if turn is not None and turn.turn_id == pending.turn_id:
                self.manager.interrupt(sid)
                with anyio.CancelScope(shield=True):
                    await turn.done.wait()
            raise
        if pending.failure is not None:
            failure = pending.failure
            raise RpcError(
                ErrorCode.INTERNAL_ERROR,
                failure.message,
                {"reason": failure.code or "turn_failed"},
            )
        result: dict[str, Any] = {"stopReason": pending.stop_reason}
        if pending.usage is not None:
            result["usage"] = pending.usage
        return result

    def cancel(self, params: Any) -> Any:
        """`session/cancel`: the running turn is interrupted; its prompt answers `cancelled`."""
        if type(params) is not dict or type(params.get("sessionId")) is not str:
            parse(schema().CancelNotification, params)
        sid = params["sessionId"]

        def work() -> None:
            if self.manager.loaded(sid) is not None:
                self.manager.interrupt(sid)

        return Work(work, (sid,))
