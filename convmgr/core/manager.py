"""ConversationManager: new / get / remove / fork / resume conversations and run their turns."""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from convmgr.core.conversation import Conversation, Turn
from convmgr.core.events import AbortReason, EventSink, ShutdownComplete
from convmgr.core.tools import Toolbox
from convmgr.core.turn import TurnRun
from convmgr.logs import fields
from convmgr.model import (
    ConversationBusy,
    ConversationExists,
    ConversationLocked,
    ConversationNotFound,
    ConversationRecord,
    ConversationSettings,
    InvalidArgument,
    Item,
    McpServerSettings,
    Overloaded,
    TurnSettings,
    preview_of,
    truncate_after_dropping_last_messages,
    utc_now,
)
from convmgr.providers.base import TurnRequest
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class ConversationView:
    """A conversation as seen by a client: its record and whether it is live."""

    record: ConversationRecord
    loaded: bool
    running: bool


class ConversationManager:
    """Owns the loaded conversations and the tasks of their turns.

    Use as an async context manager: turns run in its task group.
    """

    def __init__(
        self,
        store: ConversationStore,
        providers: ProviderRegistry,
        sink: EventSink,
        *,
        max_conversations: int | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.store = store
        self.toolbox = toolbox
        self.providers = providers
        self._sink = sink
        self._max_conversations = max_conversations
        self._loaded: dict[str, Conversation] = {}
        # Ids being created or resumed right now: taken, but not loaded yet.
        self._reserved: set[str] = set()
        self._task_group: TaskGroup | None = None
        self._closed = False
        # Conversations another process took over while loaded here: -32004 from now on.
        self._lost: set[str] = set()
        store.watch_leases(self._lease_lost)

    async def __aenter__(self) -> "ConversationManager":
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        if exc_type is not None:
            self.abort_all("shutdown")
        return await self._task_group.__aexit__(exc_type, exc, tb)

    # --- lookups ------------------------------------------------------------

    def loaded(self, conversation_id: str) -> Conversation | None:
        """The loaded conversation with that id, if any."""
        return self._loaded.get(conversation_id)

    def view(self, conv: Conversation) -> ConversationView:
        """A loaded conversation's client view."""
        return ConversationView(conv.record, True, conv.turn is not None)

    async def get_conversation(self, conversation_id: str) -> ConversationView:
        """A loaded or stored conversation; ConversationNotFound otherwise."""
        conv = self._loaded.get(conversation_id)
        if conv is not None:
            return self.view(conv)
        record = await self.store.get(conversation_id)
        if record is None:
            raise ConversationNotFound(conversation_id)
        return ConversationView(record, False, False)

    async def read_history(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        """A slice of a conversation's completed history."""
        conv = self._loaded.get(conversation_id)
        store = self.store if conv is None else conv.store
        return await store.read_items(conversation_id, offset, limit)

    async def list_conversations(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ConversationView], str | None]:
        """A page of stored conversations, newest first, with live state laid over."""
        records, next_cursor = await self.store.list(cursor, limit)
        views = []
        for record in records:
            conv = self._loaded.get(record.conversation_id)
            views.append(
                self.view(conv) if conv is not None else ConversationView(record, False, False)
            )
        return views, next_cursor

    # --- creation -------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh conversation id."""
        return str(uuid.uuid4())

    async def new_conversation(
        self, conversation_id: str | None, settings: ConversationSettings
    ) -> ConversationRecord:
        """Create and load a conversation with an empty history."""
        return await self._create(conversation_id, settings, [], forked_from=None)

    async def fork_conversation(
        self,
        source_id: str | None,
        history: Sequence[Item] | None,
        drop_last_messages: int,
        overrides: ConversationSettings,
        new_id: str | None,
    ) -> ConversationRecord:
        """Create a conversation from a source's completed history (or a given one)."""
        base = ConversationSettings()
        if source_id is not None:
            source = await self.get_conversation(source_id)
            rec = source.record
            base = rec.settings
            if not rec.ephemeral and not base.overlay(overrides).ephemeral:
                # Copied inside the store: the source's history is never read here.
                return await self._create(
                    new_id, base.overlay(overrides), [], source_id, drop_last_messages
                )
            history = await self.read_history(source_id)
        items = truncate_after_dropping_last_messages(history or [], drop_last_messages)
        return await self._create(new_id, base.overlay(overrides), items, forked_from=source_id)

    async def resume_conversation(
        self, conversation_id: str, overrides: ConversationSettings
    ) -> ConversationRecord:
        """Load a stored conversation under its id (as it is when already loaded)."""
        conv = self._loaded.get(conversation_id)
        if conv is not None:
            return conv.record
        self._check_capacity(conversation_id)
        self._reserved.add(conversation_id)
        try:
            record = await self.store.get(conversation_id)
            if record is None:
                raise ConversationNotFound(conversation_id)
            # A resumed conversation is a stored one: `ephemeral` is not an override here.
            given = replace(overrides, ephemeral=None)
            if given.provider is not None and given.model is None:
                # Another provider starts from its own default model unless one is given.
                given = replace(given, model=self.providers.get(given.provider).default_model)
            self._check_mcp_servers(given)
            record.settings = record.settings.overlay(given)
            # Shielded: a lease taken must be matched by a loaded conversation.
            with anyio.CancelScope(shield=True):
                await self.store.acquire(conversation_id)
                self._loaded[conversation_id] = Conversation(record, self._sink, self.store)
                self._lost.discard(conversation_id)
        finally:
            self._reserved.discard(conversation_id)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "conversation resumed",
                extra=fields(
                    conversation_id=conversation_id,
                    provider=record.provider,
                    model=record.model,
                    history_length=record.history_length,
                ),
            )
        return record

    def _check_mcp_servers(self, settings: ConversationSettings) -> None:
        toolbox = self.toolbox
        unknown = toolbox.unknown_servers(settings) if toolbox is not None else settings.mcp_servers
        if unknown:
            raise InvalidArgument(
                f"mcpServers: unknown MCP server {unknown[0]!r}", {"field": "mcpServers"}
            )

    def _check_capacity(self, conversation_id: str) -> None:
        if conversation_id in self._loaded or conversation_id in self._reserved:
            raise ConversationExists(conversation_id)
        limit = self._max_conversations
        if limit is not None and len(self._loaded) + len(self._reserved) >= limit:
            raise Overloaded(
                f"too many loaded conversations (--max-conversations {limit})",
                {"limit": limit},
            )

    async def _create(
        self,
        conversation_id: str | None,
        settings: ConversationSettings,
        items: list[Item],
        forked_from: str | None,
        drop_last_messages: int | None = None,
    ) -> ConversationRecord:
        """Create and load a conversation; with drop_last_messages, a stored fork of forked_from."""
        if conversation_id is None:
            conversation_id = self.new_id()
        self._check_capacity(conversation_id)
        self._check_mcp_servers(settings)
        provider = self.providers.get(settings.provider)
        now = utc_now()
        record = ConversationRecord(
            conversation_id=conversation_id,
            settings=replace(
                settings,
                provider=provider.name,
                model=settings.model or provider.default_model,
                ephemeral=bool(settings.ephemeral),
            ),
            created_at=now,
            updated_at=now,
            forked_from=forked_from,
            history_length=len(items),
            preview=preview_of(items),
        )
        self._reserved.add(conversation_id)
        # Shielded: a cancelled request must not leave a conversation stored but not loaded.
        with anyio.CancelScope(shield=True):
            try:
                if record.ephemeral:
                    # Its own store: never written to disk, never listed.
                    private = MemoryStore()
                    await private.create(record, items)
                    conv = Conversation(replace(record), self._sink, private)
                else:
                    # A stored conversation with this id that is not loaded also counts as taken.
                    # The lease is taken in the same transaction: a failure (a full
                    # disk) leaves nothing stored, so a retry is not told "exists".
                    if drop_last_messages is not None and forked_from is not None:
                        await self.store.fork_history(
                            forked_from, record, drop_last_messages, lease=True
                        )
                    else:
                        await self.store.create(record, items, lease=True)
                    conv = Conversation(replace(record), self._sink, self.store)
                self._loaded[conversation_id] = conv
            finally:
                self._reserved.discard(conversation_id)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "conversation forked" if forked_from is not None else "conversation created",
                extra=fields(
                    conversation_id=conversation_id,
                    forked_from=forked_from,
                    provider=record.provider,
                    model=record.model,
                    ephemeral=record.ephemeral or None,
                ),
            )
        return conv.record

    def attach_mcp_servers(
        self, conversation_id: str, servers: Sequence[McpServerSettings]
    ) -> None:
        """Give a loaded conversation MCP servers of its own, for as long as it stays loaded.

        They are never stored (a client's server `env` may hold secrets): a
        conversation loaded again gets them again from its client, or none.
        """
        conv = self._require(conversation_id)
        hub = self.toolbox.hub if self.toolbox is not None else None
        if hub is None:
            if servers:
                raise InvalidArgument("mcpServers: this server runs no MCP hub")
            return
        conv.mcp_servers = hub.add_servers(conversation_id, servers)

    def _detach_mcp_servers(self, conv: Conversation) -> None:
        hub = self.toolbox.hub if self.toolbox is not None else None
        if conv.mcp_servers and hub is not None:
            hub.remove_servers(conv.conversation_id)
        conv.mcp_servers = ()

    # --- removal ----------------------------------------------------------------

    async def remove_conversation(self, conversation_id: str, delete_history: bool) -> bool:
        """End a loaded conversation (abort its turn, then shutdownComplete) and free it."""
        conv = self._loaded.get(conversation_id)
        if conv is None:
            if not delete_history:
                return False
            deleted = await self.store.delete(conversation_id)
            if deleted:
                log.info(
                    "conversation deleted from the store",
                    extra=fields(conversation_id=conversation_id),
                )
            return deleted
        if conv.turn is not None:
            # Cancellable: a request cancelled here leaves the conversation loaded.
            conv.turn.abort("removed")
            await conv.turn.done.wait()
        # Shielded: once the turn is over, the removal is carried through.
        with anyio.CancelScope(shield=True):
            await self._close(conv, "removed")
            if not conv.record.ephemeral:
                await self._save_closed([conv])
                await self.store.release(conversation_id)
                if delete_history:
                    await self.store.delete(conversation_id)
        log.info(
            "conversation removed",
            extra=fields(
                conversation_id=conversation_id,
                provider=conv.record.provider,
                model=conv.record.model,
                history_deleted=delete_history,
            ),
        )
        return True

    async def _close(self, conv: Conversation, reason: AbortReason) -> None:
        turn = conv.turn
        if turn is not None:
            turn.abort(reason)
            await turn.done.wait()
        if self._loaded.get(conv.conversation_id) is conv:
            del self._loaded[conv.conversation_id]
            self._detach_mcp_servers(conv)
            conv.emit(None, ShutdownComplete())
            conv.record.last_seq = conv.seq

    def _lease_lost(self, conversation_id: str) -> None:
        """Another process took the conversation over: stop its turn, unload it, write nothing."""
        conv = self._loaded.get(conversation_id)
        if conv is None or self._task_group is None:
            return
        log.warning("lost the lease on %s to another process: unloading it", conversation_id)
        self._lost.add(conversation_id)
        if conv.turn is not None:
            conv.turn.abort("leaseLost")
        self._task_group.start_soon(self._unload_lost, conv)

    async def _unload_lost(self, conv: Conversation) -> None:
        # Not _close: the lease and the stored record belong to the new holder now.
        turn = conv.turn
        if turn is not None:
            await turn.done.wait()
        if self._loaded.get(conv.conversation_id) is conv:
            del self._loaded[conv.conversation_id]
            conv.emit(None, ShutdownComplete())

    def abort_all(self, reason: AbortReason) -> None:
        """Abort every running turn."""
        for conv in self._loaded.values():
            if conv.turn is not None:
                conv.turn.abort(reason)

    async def close_all(self, reason: AbortReason = "shutdown") -> None:
        """Abort every turn and end every loaded conversation; no new turns start after."""
        self._closed = True
        self.abort_all(reason)
        closing = list(self._loaded.values())
        for conv in closing:
            await self._close(conv, reason)
        await self._save_closed([conv for conv in closing if not conv.record.ephemeral])

    async def _save_closed(self, closed: list[Conversation]) -> None:
        """Store what closing changed (lastSeq after shutdownComplete), in one transaction."""
        if not closed:
            return
        try:
            await self.store.save_records([conv.record for conv in closed])
        except Exception:
            log.exception("could not save %d closed conversations", len(closed))

    async def drain(self) -> None:
        """Start no new turns and wait for the running ones to finish (callers bound the wait)."""
        self._closed = True
        for conv in list(self._loaded.values()):
            if conv.turn is not None:
                await conv.turn.done.wait()

    # --- turns --------------------------------------------------------------------

    def interrupt(self, conversation_id: str) -> bool:
        """Abort the running turn; whether there was one."""
        conv = self._require(conversation_id)
        return conv.turn is not None and conv.turn.abort("interrupted")

    def send_user_turn(
        self, conversation_id: str, texts: Sequence[str], settings: TurnSettings
    ) -> str:
        """Start a turn; its events follow. Returns the turn id.

        The turn's task only starts once the caller yields to the event loop,
        so the caller can queue its response before the turn's first event.
        """
        conv = self._require(conversation_id)
        if conv.turn is not None:
            raise ConversationBusy(conversation_id)
        if self._closed:
            raise Overloaded("the server is shutting down")
        provider = self.providers.get(conv.record.provider)  # fails early if unconfigured
        turn = Turn(str(uuid.uuid4()))
        conv.turn = turn
        input_text = "\n".join(texts)
        given = conv.record.settings
        request = TurnRequest(
            model=settings.model or conv.record.model,
            instructions=given.instructions,
            history=(),
            input_text=input_text,
            temperature=settings.temperature
            if settings.temperature is not None
            else given.temperature,
            max_output_tokens=settings.max_output_tokens or given.max_output_tokens,
        )
        assert self._task_group is not None
        run = TurnRun(conv, turn, request, provider, conv.store, self._sink, self.toolbox)
        self._task_group.start_soon(run.run, name=f"turn {turn.turn_id}")
        return turn.turn_id

    def _require(self, conversation_id: str) -> Conversation:
        conv = self._loaded.get(conversation_id)
        if conv is None:
            if conversation_id in self._lost:
                raise ConversationLocked(conversation_id)
            raise ConversationNotFound(conversation_id)
        return conv
