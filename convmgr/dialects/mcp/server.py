"""The MCP dialect's method table: the handshake, tools and resources over the manager.

Protocol faults (bad params, an unknown tool or resource, no handshake yet)
are JSON-RPC errors; everything that goes wrong with a conversation is a tool
result with `isError` (docs/protocol.md §16). Requests naming a conversation
are applied in the order read, as in the convmgr dialect: each takes a place
in line for its conversation ids when it is read, and a turn gives it up once
it has started, so a conversation_get never waits behind a running turn.
"""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, cast

import anyio

from convmgr import __version__
from convmgr.core import events as e
from convmgr.core.manager import ConversationManager, ConversationView
from convmgr.dialects.mcp import validate, wire
from convmgr.dialects.mcp.client import ElicitingClient
from convmgr.dialects.mcp.tools import BY_NAME, CONVERSATION_ID, TOOLS
from convmgr.dialects.mcp.turns import TurnEvents, TurnWatch
from convmgr.jsonrpc.connection import Connection, internal_error
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.messages import valid_id
from convmgr.jsonrpc.sequencer import KeyedSequencer, Ticket
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

log = logging.getLogger(__name__)

Json = dict[str, Any]

SCHEME = "conversation://"
RESOURCE_PAGE = 50
# Elicitation came with this revision; older hosts cannot be asked.
_ELICITATION_SINCE = wire.HANDSHAKE_PROTOCOL_VERSIONS.index("2025-06-18")

_CODES: dict[type[ConversationError], str] = {
    ConversationNotFound: "not_found",
    ConversationBusy: "busy",
    ConversationExists: "exists",
    ConversationLocked: "locked",
    Overloaded: "overloaded",
    InvalidArgument: "invalid_arguments",
    StorageFailed: "storage_failed",
}

INSTRUCTIONS = (
    "convmgr keeps durable conversations with language models. conversation_start begins "
    "one and returns the model's reply and a conversationId; conversation_reply continues it, "
    "conversation_fork copies it (optionally without its last messages), conversation_get "
    "and conversation_list show them, conversation_remove unloads or deletes one. Stored "
    "conversations are also resources conversation://ID (history as JSON)."
)

RESOURCE_TEMPLATE: wire.ResourceTemplate = {
    "uriTemplate": SCHEME + "{conversationId}",
    "name": "conversation",
    "title": "A stored conversation",
    "description": "A conversation's settings, state and history, as JSON.",
    "mimeType": "application/json",
}


def to_text(value: Any) -> str:
    """JSON text for a text block or a resource."""
    return json.dumps(value, ensure_ascii=False)


def success(structured: Json, text: str | None = None) -> wire.CallToolResult:
    """A tool result: the object as structuredContent, and one text block (its JSON by default)."""
    return {
        "content": [{"type": "text", "text": to_text(structured) if text is None else text}],
        "structuredContent": structured,
    }


def failure(code: str, message: str) -> wire.CallToolResult:
    """A failed call: the message as text, `{error: {code, message}}` as structuredContent."""
    return {
        "content": [{"type": "text", "text": message}],
        "structuredContent": {"error": {"code": code, "message": message}},
        "isError": True,
    }


def failure_of(exc: Exception) -> wire.CallToolResult:
    """A failed call for what a conversation tool raised."""
    if isinstance(exc, ConversationError):
        return failure(_CODES.get(type(exc), "internal"), exc.message)
    if isinstance(exc, validate.Invalid):
        return failure("invalid_arguments", f"invalid arguments: {exc}")
    log.error("a conversation tool failed", exc_info=exc)
    return failure("internal", "internal error")


def conversation_info(view: ConversationView) -> Json:
    """ConversationInfo, as the convmgr dialect's getConversation gives it (docs/protocol.md §4)."""
    record = view.record
    info: Json = {"conversationId": record.conversation_id}
    info["status"] = "running" if view.running else "idle"
    info["loaded"] = view.loaded
    info.update(provider=record.provider, model=record.model)
    info.update(createdAt=record.created_at, updatedAt=record.updated_at)
    info.update(forkedFrom=record.forked_from, historyLength=record.history_length)
    info.update(lastSeq=record.last_seq, preview=record.preview)
    info["metadata"] = record.settings.metadata
    return info


def protocol_error(code: int, message: str, data: Any = None) -> NoReturn:
    """Answer the request with a JSON-RPC error."""
    raise RpcError(code, message, data)


def map_error(exc: Exception) -> RpcError:
    """The JSON-RPC error for what a handler raised (tool failures never get here)."""
    if isinstance(exc, validate.Invalid):
        return RpcError(wire.INVALID_PARAMS, f"invalid params: {exc}")
    if isinstance(exc, ConversationError):
        return RpcError(wire.INTERNAL_ERROR, exc.message, exc.data)
    return internal_error(exc)


class McpServer:
    """Binds MCP's methods to a ConversationManager over a Connection."""

    def __init__(
        self,
        connection: Connection,
        manager: ConversationManager,
        providers: ProviderRegistry,
        client: ElicitingClient,
        events: TurnEvents,
        *,
        tools_page: int | None = None,
        resources_page: int | None = None,
    ) -> None:
        """`tools_page`, `resources_page`: page sizes (all six tools; RESOURCE_PAGE)."""
        self.conn = connection
        self.manager = manager
        self.providers = providers
        self.client = client
        self.events = events
        self.tools_page = tools_page or len(TOOLS)
        self.resources_page = resources_page or RESOURCE_PAGE
        self.protocol_version: str | None = None  # negotiated by `initialize`
        self.shut_down = False  # the session is ending: requests but ping are refused
        self.exit_requested = anyio.Event()  # MCP has no `exit`: ending stdin ends a session
        self._sequencer = KeyedSequencer()
        self._tools: dict[str, Callable[[Json, str | int | None], Awaitable[Any]]] = {
            "conversation_start": self._start,
            "conversation_reply": self._reply,
            "conversation_fork": self._fork,
            "conversation_get": self._get,
            "conversation_list": self._list,
            "conversation_remove": self._remove,
        }
        self._register()

    # --- registration ---------------------------------------------------------------

    def _register(self) -> None:
        table: dict[str, Callable[[Any], Any]] = {
            "initialize": self.initialize,
            "ping": self.ping,
            "tools/list": self.list_tools,
            "tools/call": self.call_tool,
            "resources/list": self.list_resources,
            "resources/read": self.read_resource,
            "resources/templates/list": self.list_resource_templates,
        }
        for name, handler in table.items():
            self.conn.method(name, self._guard(name, handler))
        self.conn.map_errors(map_error)
        self.conn.notification("notifications/initialized", lambda params: None)
        self.conn.notification("notifications/cancelled", self.on_cancelled)

    def _guard(self, name: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The lifecycle around a handler: the handshake first, nothing new once ending."""
        if name == "ping":
            return handler

        def guarded(params: Any) -> Any:
            if self.shut_down:
                protocol_error(wire.INVALID_REQUEST, "the server is shutting down")
            if self.protocol_version is None and name != "initialize":
                protocol_error(
                    wire.INVALID_REQUEST,
                    "initialize first: this server speaks the initialize handshake",
                    {"supported": list(wire.HANDSHAKE_PROTOCOL_VERSIONS)},
                )
            return handler(params)

        return guarded

    # --- lifecycle ----------------------------------------------------------------------

    def initialize(self, params: Any) -> wire.InitializeResult:
        """`initialize`: the client's version when this server speaks it, else the latest."""
        p = cast(wire.InitializeRequestParams, validate.read("InitializeRequestParams", params))
        if self.protocol_version is not None:
            protocol_error(wire.INVALID_REQUEST, "initialize was already done")
        versions = wire.HANDSHAKE_PROTOCOL_VERSIONS
        requested = p["protocolVersion"]
        version = requested if requested in versions else wire.LATEST_HANDSHAKE_VERSION
        self.protocol_version = version
        elicitation = p["capabilities"].get("elicitation")
        # `{}` is form mode (the 2025-06-18 shape); a host may offer URL mode only.
        form = elicitation is not None and ("form" in elicitation or "url" not in elicitation)
        self.client.elicitation = form and versions.index(version) >= _ELICITATION_SINCE
        client = p["clientInfo"]
        log.info(
            "MCP session initialized: %s %s, protocol %s (asked %s), elicitation %s",
            client["name"],
            client["version"],
            version,
            requested,
            "yes" if self.client.elicitation else "no",
        )
        return {
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": False},
                "resources": {"subscribe": False, "listChanged": False},
            },
            "serverInfo": {"name": "convmgr", "title": "convmgr", "version": __version__},
            "instructions": INSTRUCTIONS,
        }

    def ping(self, params: Any) -> Json:
        """`ping`: `{}`, at any time."""
        return {}

    def on_cancelled(self, params: Any) -> None:
        """`notifications/cancelled`: the request gets no answer; a turn it runs is interrupted."""
        try:
            p = validate.read("CancelledNotificationParams", params)
        except validate.Invalid as exc:
            log.warning("ignoring notifications/cancelled: %s", exc)
            return
        target = p.get("requestId")
        if target is not None and valid_id(target):
            log.info("request %r cancelled by the client: %s", target, p.get("reason", ""))
            self.conn.cancel(target)

    # --- tools --------------------------------------------------------------------------

    def list_tools(self, params: Any) -> wire.ListToolsResult:
        """`tools/list`: the six tools, `tools_page` to a page."""
        start = self._offset(validate.read("PaginatedRequestParams", params), len(TOOLS))
        end = start + self.tools_page
        page: wire.ListToolsResult = {"tools": TOOLS[start:end]}
        if end < len(TOOLS):
            page["nextCursor"] = str(end)
        return page

    @staticmethod
    def _offset(params: Json, size: int) -> int:
        """Where a page of a fixed list starts: its cursor is the offset we gave."""
        cursor = params.get("cursor")
        if cursor is None:
            return 0
        if not (cursor.isdigit() and 0 < int(cursor) < size):
            protocol_error(wire.INVALID_PARAMS, f"invalid params: cursor: not ours: {cursor!r}")
        return int(cursor)

    def call_tool(self, params: Any) -> Any:
        """`tools/call`: an unknown tool is a protocol error, the tool's own failures results."""
        p = cast(wire.CallToolRequestParams, validate.read("CallToolRequestParams", params))
        name = p["name"]
        tool = BY_NAME.get(name)
        if tool is None:
            protocol_error(wire.INVALID_PARAMS, f"unknown tool: {name}", {"name": name})
        arguments = p.get("arguments", {})
        token = p.get("_meta", {}).get("progressToken")
        try:
            validate.check(tool["inputSchema"], arguments)
        except validate.Invalid as exc:
            return failure_of(exc)
        return self._tools[name](arguments, token)

    def _ordered(self, keys: tuple[str, ...]) -> Ticket:
        """A place in line behind earlier requests on these conversations (taken when read)."""
        return self._sequencer.ticket(keys)

    async def _run(
        self, ticket: Ticket, work: Callable[[], Awaitable[Json]]
    ) -> wire.CallToolResult:
        """Run `work` in its turn; what it raises is a failed result."""
        try:
            await ticket.wait()
            return success(await work())
        except Exception as exc:
            return failure_of(exc)
        finally:
            ticket.release()

    def _start(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_start: a new conversation and its first turn."""
        conversation_id = args.get("conversationId") or self.manager.new_id()
        settings = ConversationSettings(
            provider=args.get("provider"),
            model=args.get("model"),
            instructions=args.get("instructions"),
        )

        async def begin() -> TurnWatch:
            self.providers.get(settings.provider)
            await self.manager.new_conversation(conversation_id, settings)
            return self._turn(conversation_id, args["prompt"], token)

        return self._in_turn(self._ordered((conversation_id,)), begin)

    def _reply(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_reply: the next turn (a stored conversation is resumed first)."""
        conversation_id: str = args["conversationId"]

        async def begin() -> TurnWatch:
            if self.manager.loaded(conversation_id) is None:
                await self.manager.resume_conversation(conversation_id, ConversationSettings())
            return self._turn(conversation_id, args["prompt"], token)

        return self._in_turn(self._ordered((conversation_id,)), begin)

    def _turn(self, conversation_id: str, prompt: str, token: str | int | None) -> TurnWatch:
        """Start a turn and follow it, before anything yields (so no event is missed)."""
        turn_id = self.manager.send_user_turn(conversation_id, [prompt], TurnSettings())
        return self.events.watch(conversation_id, turn_id, token)

    async def _in_turn(
        self, ticket: Ticket, begin: Callable[[], Awaitable[TurnWatch]]
    ) -> wire.CallToolResult:
        """Start a turn in line, give up the place, and answer with the turn's outcome."""
        try:
            await ticket.wait()
            watch = await begin()
        except Exception as exc:
            return failure_of(exc)
        finally:
            ticket.release()
        try:
            await watch.done.wait()
        except anyio.get_cancelled_exc_class():
            # notifications/cancelled (or the session ending): the turn stops too.
            with anyio.CancelScope(shield=True):
                self._abort(watch)
            raise
        return self._turn_result(watch)

    def _abort(self, watch: TurnWatch) -> None:
        """Interrupt the watched turn if it is still the conversation's running one."""
        conv = self.manager.loaded(watch.conversation_id)
        if conv is not None and conv.turn is not None and conv.turn.turn_id == watch.turn_id:
            conv.turn.abort("interrupted")

    @staticmethod
    def _turn_result(watch: TurnWatch) -> wire.CallToolResult:
        """The answer to a turn's call: its reply, or why there is none."""
        match watch.outcome:
            case e.TurnComplete(reply):
                structured = {
                    "conversationId": watch.conversation_id,
                    "turnId": watch.turn_id,
                    "reply": reply,
                }
                return success(structured, reply)
            case e.TurnFailed(message, code):
                return failure("turn_failed", f"{message} ({code})" if code else message)
            case e.TurnAborted(reason):
                return failure("aborted", f"the turn was aborted ({reason})")
        raise AssertionError("a settled watch has a terminal event")

    def _fork(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_fork: a copy under a new id, without its last user messages if asked."""
        source: str = args["conversationId"]
        new_id = self.manager.new_id()

        async def work() -> Json:
            record = await self.manager.fork_conversation(
                source, None, args.get("dropLastMessages", 0), ConversationSettings(), new_id
            )
            return {"conversationId": record.conversation_id}

        return self._run(self._ordered((source, new_id)), work)

    def _get(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_get: ConversationInfo, with the whole history if asked."""
        conversation_id: str = args["conversationId"]

        async def work() -> Json:
            info = conversation_info(await self.manager.get_conversation(conversation_id))
            if args.get("includeHistory"):
                info["history"] = await self.manager.read_history(conversation_id)
            return info

        return self._run(self._ordered((conversation_id,)), work)

    def _list(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_list: a page of stored conversations, newest first."""

        async def work() -> Json:
            try:
                views, cursor = await self.manager.list_conversations(
                    args.get("cursor"), args.get("limit", 50)
                )
            except ValueError as exc:
                raise InvalidArgument(f"invalid arguments: cursor: {exc}") from None
            return {"items": [conversation_info(v) for v in views], "nextCursor": cursor}

        return self._run(self._ordered(()), work)

    def _remove(self, args: Json, token: str | int | None) -> Awaitable[wire.CallToolResult]:
        """conversation_remove: unload it (its turn aborted), its history deleted if asked."""
        conversation_id: str = args["conversationId"]

        async def work() -> Json:
            removed = await self.manager.remove_conversation(
                conversation_id, bool(args.get("deleteHistory"))
            )
            return {"removed": removed}

        return self._run(self._ordered((conversation_id,)), work)

    # --- resources ----------------------------------------------------------------------

    def list_resources(self, params: Any) -> Awaitable[wire.ListResourcesResult]:
        """`resources/list`: stored conversations, newest first, `resources_page` to a page."""
        cursor = validate.read("PaginatedRequestParams", params).get("cursor")

        async def work() -> wire.ListResourcesResult:
            try:
                views, next_cursor = await self.manager.list_conversations(
                    cursor, self.resources_page
                )
            except ValueError as exc:
                protocol_error(wire.INVALID_PARAMS, f"invalid params: cursor: {exc}")
            page: wire.ListResourcesResult = {"resources": [self._resource(v) for v in views]}
            if next_cursor is not None:
                page["nextCursor"] = next_cursor
            return page

        return work()

    @staticmethod
    def _resource(view: ConversationView) -> wire.Resource:
        record = view.record
        items = record.history_length
        return {
            "uri": SCHEME + record.conversation_id,
            "name": record.conversation_id,
            "title": (record.preview or record.conversation_id)[:80],
            "description": f"{record.provider} {record.model}, {items} history "
            f"item{'' if items == 1 else 's'}, updated {record.updated_at}",
            "mimeType": "application/json",
            "annotations": {"lastModified": record.updated_at},
        }

    def read_resource(self, params: Any) -> Awaitable[wire.ReadResourceResult]:
        """`resources/read`: a conversation's info and whole history as one JSON text."""
        uri: str = validate.read("ReadResourceRequestParams", params)["uri"]
        conversation_id = uri.removeprefix(SCHEME)
        try:
            if not uri.startswith(SCHEME):
                raise validate.Invalid("uri", "not a conversation:// URI")
            validate.check(CONVERSATION_ID, conversation_id)
        except validate.Invalid:
            protocol_error(wire.INVALID_PARAMS, f"unknown resource: {uri}", {"uri": uri})

        async def work() -> wire.ReadResourceResult:
            try:
                info = conversation_info(await self.manager.get_conversation(conversation_id))
            except ConversationNotFound:
                protocol_error(wire.INVALID_PARAMS, f"resource not found: {uri}", {"uri": uri})
            info["history"] = await self.manager.read_history(conversation_id)
            contents: wire.TextResourceContents = {
                "uri": uri,
                "mimeType": "application/json",
                "text": to_text(info),
            }
            return {"contents": [contents]}

        return work()

    def list_resource_templates(self, params: Any) -> wire.ListResourceTemplatesResult:
        """`resources/templates/list`: conversation://{conversationId}, on one page."""
        self._offset(validate.read("PaginatedRequestParams", params), 1)
        return {"resourceTemplates": [RESOURCE_TEMPLATE]}
