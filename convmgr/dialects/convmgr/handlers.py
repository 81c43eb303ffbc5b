"""The convmgr dialect's method table: protocol methods to manager calls.

Each handler validates its params and returns its result, or Work naming the
conversations it orders on; rpc_error maps what they raise to JSON-RPC errors.
The session around it (end of input, signals, drain) is app.py's.
"""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from pydantic_core import ValidationError

from convmgr import __version__
from convmgr.core.manager import ConversationManager
from convmgr.dialects.convmgr.client import ConnectionClient
from convmgr.dialects.convmgr.errors import ConvmgrCode, ErrorCode
from convmgr.dialects.convmgr.translate import conversation_info, session_configured, settings_of
from convmgr.jsonrpc.connection import Connection, Work, internal_error
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.messages import non_finite_path, valid_id
from convmgr.model import (
    ConversationBusy,
    ConversationError,
    ConversationExists,
    ConversationLocked,
    ConversationNotFound,
    ConversationSettings,
    InvalidArgument,
    Overloaded,
    StorageFailed,
    TurnSettings,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from convmgr.dialects.convmgr import methods as m
else:

    class _LazyMethods:
        """Stands for convmgr.dialects.convmgr.methods until first used, then replaces itself.

        pydantic and the conversation models cost ~90 ms to import and build:
        `initialize` is answered without them (see Server.warm_up).
        """

        def __getattr__(self, name: str) -> Any:
            global m
            from convmgr.dialects.convmgr import methods

            m = methods
            return getattr(methods, name)

    m = _LazyMethods()

P = TypeVar("P", bound="BaseModel")

_ERROR_CODES: dict[type[ConversationError], int] = {
    ConversationNotFound: ConvmgrCode.CONVERSATION_NOT_FOUND,
    ConversationBusy: ConvmgrCode.CONVERSATION_BUSY,
    ConversationExists: ConvmgrCode.CONVERSATION_EXISTS,
    ConversationLocked: ConvmgrCode.CONVERSATION_LOCKED,
    Overloaded: ConvmgrCode.OVERLOADED,
    InvalidArgument: ErrorCode.INVALID_PARAMS,
    StorageFailed: ConvmgrCode.STORAGE_FAILED,
}


# Room for a response's envelope and the keys around a page's items.
_PAGE_OVERHEAD = 256
# History is read in chunks that double from the first to the largest.
_FIRST_CHUNK = 256
_MAX_CHUNK = 8192


def parse(model: type[P], params: Any) -> P:
    """Validate params with a pydantic model (a ValidationError is -32602, see rpc_error)."""
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise RpcError(ErrorCode.INVALID_PARAMS, "params must be an object")
    check_finite(params)
    return model.model_validate(params)


def check_finite(params: Any) -> None:
    """-32602 when params hold NaN or an infinity: JSON has no such numbers."""
    where = non_finite_path(params)
    if where is not None:
        loc = ".".join(str(part) for part in where) or "params"
        message = "numbers must be finite (NaN and Infinity are not JSON)"
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            f"invalid params: {loc}: {message}",
            {"errors": [{"type": "finite_number", "loc": list(where), "msg": message}]},
        )


def _no_params(params: Any) -> None:
    """Methods without params still take only an object (or none), as every method does."""
    if params is not None and type(params) is not dict:
        raise RpcError(ErrorCode.INVALID_PARAMS, "params must be an object")
    check_finite(params)


def _plain_initialize_params(params: Any) -> bool:
    """Whether `initialize` params are plainly valid, checked without pydantic.

    The common shapes are accepted here so that the first answer does not wait
    for pydantic; anything else goes through InitializeParams as before.
    """
    if params is None:
        return True
    if type(params) is not dict or not params.keys() <= _INITIALIZE_KEYS:
        return False
    version = params.get("protocolVersion")
    info = params.get("clientInfo")
    capabilities = params.get("capabilities")
    return (
        (version is None or type(version) is str)
        and (capabilities is None or type(capabilities) is dict)
        and (
            info is None
            or (
                type(info) is dict
                and info.keys() <= _CLIENT_INFO_KEYS
                and type(info.get("name")) is str
                and (info.get("version") is None or type(info.get("version")) is str)
            )
        )
    )


_INITIALIZE_KEYS = frozenset({"protocolVersion", "clientInfo", "capabilities"})
_CLIENT_INFO_KEYS = frozenset({"name", "version"})


def rpc_error(exc: Exception) -> RpcError:
    """The JSON-RPC error that answers a request whose handler or work raised `exc`.

    Manager errors get their codes (docs/protocol.md §7), params that do not fit
    their model -32602 listing the errors, anything unexpected -32603 (logged,
    never shown to the client).
    """
    if isinstance(exc, RpcError):
        return _with_errors(exc)
    if isinstance(exc, ConversationError):
        code = _ERROR_CODES.get(type(exc), ErrorCode.INTERNAL_ERROR)
        return _with_errors(RpcError(code, exc.message, exc.data))
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        return RpcError(
            ErrorCode.INVALID_PARAMS,
            f"invalid params: {where}: {first['msg']}",
            {"errors": errors},
        )
    return internal_error(exc)


def _with_errors(error: RpcError) -> RpcError:
    """Every -32602 lists what is wrong in `data.errors` (docs/protocol.md §7)."""
    if error.code != ErrorCode.INVALID_PARAMS:
        return error
    data = error.data if isinstance(error.data, dict) else {}
    if "errors" in data:
        return error
    field = data.get("field")
    loc = [field] if isinstance(field, str) else []
    entry = {"type": "value_error", "loc": loc, "msg": error.message}
    return RpcError(error.code, error.message, {**data, "errors": [entry]})


class Server:
    """Binds the protocol's methods to a ConversationManager over a Connection.

    The conversation methods' wire models are imported on first use (building
    some thirty model classes takes tens of milliseconds and `initialize` does
    not need them) and warmed up as soon as the first answer is written.
    """

    def __init__(
        self,
        connection: Connection,
        manager: ConversationManager,
        providers: ProviderRegistry,
        store: ConversationStore,
        client: ConnectionClient | None = None,
    ) -> None:
        self.conn = connection
        self.client = client
        self.manager = manager
        self.providers = providers
        self.store = store
        self.initialized = False
        self.shut_down = False  # later requests but ping are refused
        self.exit_requested = anyio.Event()  # the `exit` notification came
        self._first_request = anyio.Event()
        self._register()

    # --- registration -------------------------------------------------------------

    def _register(self) -> None:
        table: dict[str, Callable[[Any], Any]] = {
            "initialize": self.initialize,
            "ping": self.ping,
            "shutdown": self.shutdown,
            "newConversation": self.new_conversation,
            "getConversation": self.get_conversation,
            "removeConversation": self.remove_conversation,
            "forkConversation": self.fork_conversation,
            "sendUserTurn": self.send_user_turn,
            "interruptConversation": self.interrupt_conversation,
            "listConversations": self.list_conversations,
            "resumeConversation": self.resume_conversation,
        }
        for name, handler in table.items():
            self.conn.method(name, self._guard(name, handler))
        self.conn.map_errors(rpc_error)
        self.conn.notification("initialized", lambda params: None)
        self.conn.notification("exit", self.on_exit)
        # Both families' cancellation: LSP's and MCP's, each naming the request its way.
        self.conn.notification("$/cancelRequest", self._canceller("$/cancelRequest", "id"))
        self.conn.notification(
            "notifications/cancelled", self._canceller("notifications/cancelled", "requestId")
        )

    def _guard(self, name: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The lifecycle's checks around a handler."""
        lifecycle = name in ("initialize", "ping")

        def guarded(params: Any) -> Any:
            if self.shut_down and name != "ping":
                raise RpcError(ErrorCode.INVALID_REQUEST, "the server is shut down")
            if not lifecycle:
                self.initialized = True
            if not self._first_request.is_set():
                self._first_request.set()
            return handler(params)

        return guarded

    def _canceller(self, method: str, param: str) -> Callable[[Any], None]:
        """A cancellation notification's handler: `params[param]` names the request."""

        def cancel(params: Any) -> None:
            target = params.get(param) if isinstance(params, dict) else None
            if target is None or not valid_id(target):
                log.warning("ignoring %s without a valid request id", method)
                return
            self.conn.cancel(target)

        return cancel

    # --- lifecycle ------------------------------------------------------------------

    def initialize(self, params: Any) -> Any:
        """`initialize`: once, optional."""
        check_finite(params)
        if not _plain_initialize_params(params):
            from convmgr.dialects.convmgr.lifecycle import InitializeParams

            parse(InitializeParams, params)
        if self.initialized:
            raise RpcError(ErrorCode.INVALID_REQUEST, "initialize was already done")
        self.initialized = True
        capabilities = params.get("capabilities") if isinstance(params, dict) else None
        if self.client is not None and isinstance(capabilities, dict):
            self.client.approvals = capabilities.get("approvals") is True
        return {
            "protocolVersion": "1",
            "serverInfo": {"name": "convmgr", "version": __version__},
            "capabilities": {
                "framings": ["ndjson", "lsp"],
                "batches": True,
                "cancellation": ["$/cancelRequest", "notifications/cancelled"],
                "persistentStore": self.store.persistent,
                "tools": True,
                "serverRequests": ["tool/call", "approval/request"],
            },
            "providers": [
                {"name": p.name, "kind": p.kind, "defaultModel": p.default_model}
                for p in self.providers.all()
            ],
        }

    def ping(self, params: Any) -> Any:
        """`ping`: `{}`."""
        _no_params(params)
        return {}

    def shutdown(self, params: Any) -> Any:
        """`shutdown`: refuse new work, abort turns, flush the store."""
        _no_params(params)
        self.shut_down = True

        async def work() -> Any:
            await self.manager.close_all("shutdown")
            await self.store.close()
            return {}

        # After every request read before it is applied (docs/protocol.md §3).
        return Work(work, keys=self.conn.held_keys())

    def on_exit(self, params: Any) -> None:
        """`exit`: end the session (after shutdown's work, if it was not asked for)."""
        self.exit_requested.set()

    async def warm_up(self) -> None:
        """After the first answer is written, build the conversation methods' validators."""
        await self._first_request.wait()
        await self.conn.outbound.flush()
        from convmgr.dialects.convmgr import methods

        for model in (
            methods.NewConversationParams,
            methods.GetConversationParams,
            methods.SendUserTurnParams,
        ):
            model.model_rebuild(force=True)

    # --- conversations ----------------------------------------------------------------

    def new_conversation(self, params: Any) -> Any:
        """`newConversation`."""
        p = parse(m.NewConversationParams, params)
        self.providers.get(p.provider)
        conversation_id = p.conversation_id or self.manager.new_id()
        settings = settings_of(p)

        async def work() -> Any:
            record = await self.manager.new_conversation(conversation_id, settings)
            return session_configured(record)

        return Work(work, (conversation_id,))

    def get_conversation(self, params: Any) -> Any:
        """`getConversation`."""
        p = parse(m.GetConversationParams, params)
        cid = p.conversation_id

        def work() -> Any:
            conv = self.manager.loaded(cid)
            if conv is not None and not p.include_history:
                # Loaded and no history asked for: answered without waiting.
                return conversation_info(self.manager.view(conv))
            return read()

        async def read() -> Any:
            info = conversation_info(await self.manager.get_conversation(cid))
            if p.include_history:
                history, next_offset = await self._history_page(
                    cid, info, p.history_offset, p.history_limit
                )
                info["history"] = history
                info["nextHistoryOffset"] = next_offset
            return info

        return Work(work, (cid,))

    async def _history_page(
        self, cid: str, info: dict[str, Any], offset: int, limit: int | None
    ) -> tuple[list[Any], int | None]:
        """The asked slice of history, cut short to fit the response limit; and where to go on.

        Read in growing chunks, so a page cut short early never reads the rest.
        The first item is always taken: one that alone is over the limit makes
        the response an error (see Outbound), and the client can skip it.
        """
        from pydantic_core import to_json

        budget = self.conn.max_message_bytes - len(to_json(info)) - _PAGE_OVERHEAD
        page: list[Any] = []
        used = 0
        pos = offset
        chunk = _FIRST_CHUNK
        end = None if limit is None else offset + limit
        while end is None or pos < end:
            want = chunk if end is None else min(chunk, end - pos)
            items = await self.manager.read_history(cid, pos, want)
            for item in items:
                size = len(to_json(item, inf_nan_mode="null")) + 1
                if page and used + size > budget:
                    return page, pos
                page.append(item)
                used += size
                pos += 1
            if len(items) < want:
                return page, None
            chunk = min(chunk * 2, _MAX_CHUNK)
        return page, (pos if pos < info["historyLength"] else None)

    def remove_conversation(self, params: Any) -> Any:
        """`removeConversation`."""
        p = parse(m.RemoveConversationParams, params)

        async def work() -> Any:
            removed = await self.manager.remove_conversation(p.conversation_id, p.delete_history)
            return {"removed": removed}

        return Work(work, (p.conversation_id,))

    def fork_conversation(self, params: Any) -> Any:
        """`forkConversation`."""
        p = parse(m.ForkConversationParams, params)
        if (p.conversation_id is None) == (p.history is None):
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                "invalid params: give either conversationId or history",
            )
        overrides = p.overrides
        new_id = (overrides.conversation_id if overrides else None) or self.manager.new_id()
        if overrides is not None:
            self.providers.get(overrides.provider)
        history = (
            None if p.history is None else [item.model_dump(by_alias=True) for item in p.history]
        )
        keys = (new_id,) if p.conversation_id is None else (p.conversation_id, new_id)

        async def work() -> Any:
            record = await self.manager.fork_conversation(
                p.conversation_id, history, p.drop_last_messages, settings_of(overrides), new_id
            )
            return session_configured(record)

        return Work(work, keys)

    def send_user_turn(self, params: Any) -> Any:
        """`sendUserTurn`: the response is queued before the turn's first event."""
        p = parse(m.SendUserTurnParams, params)
        o = p.overrides
        settings = (
            TurnSettings(o.model, o.temperature, o.max_output_tokens) if o else TurnSettings()
        )
        texts = [part.text for part in p.input]
        cid = p.conversation_id

        def work() -> Any:
            # The turn runs in the manager's task: this returns once it has started.
            return {"turnId": self.manager.send_user_turn(cid, texts, settings)}

        return Work(work, (cid,))

    def interrupt_conversation(self, params: Any) -> Any:
        """`interruptConversation`."""
        p = parse(m.InterruptConversationParams, params)
        cid = p.conversation_id
        return Work(lambda: {"interrupted": self.manager.interrupt(cid)}, (cid,))

    def list_conversations(self, params: Any) -> Any:
        """`listConversations`: newest first, with a cursor."""
        p = parse(m.ListConversationsParams, params)

        async def work() -> Any:
            try:
                views, next_cursor = await self.manager.list_conversations(p.cursor, p.limit)
            except ValueError as exc:
                raise RpcError(
                    ErrorCode.INVALID_PARAMS, f"invalid params: cursor: {exc}", {"field": "cursor"}
                ) from None
            return self._list_page([conversation_info(v) for v in views], next_cursor)

        return Work(work)

    def _list_page(self, infos: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
        """A list page, ended early (with its cursor) where it would not fit the response limit."""
        from pydantic_core import to_json

        from convmgr.store.memory import encode_cursor

        budget = self.conn.max_message_bytes - _PAGE_OVERHEAD
        used = 0
        for n, info in enumerate(infos):
            used += len(to_json(info, inf_nan_mode="null")) + 1
            if n and used > budget:
                last = infos[n - 1]
                cursor = encode_cursor(last["updatedAt"], last["conversationId"])
                return {"items": infos[:n], "nextCursor": cursor}
        return {"items": infos, "nextCursor": next_cursor}

    def resume_conversation(self, params: Any) -> Any:
        """`resumeConversation`."""
        p = parse(m.ResumeConversationParams, params)
        overrides: ConversationSettings = settings_of(p.overrides)
        if overrides.provider is not None:
            self.providers.get(overrides.provider)

        async def work() -> Any:
            record = await self.manager.resume_conversation(p.conversation_id, overrides)
            return session_configured(record)

        return Work(work, (p.conversation_id,))
