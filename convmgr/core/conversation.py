"""A loaded conversation: its record and live state (the history lives in the store)."""

import anyio

from convmgr.core.events import AbortReason, Event, EventSink
from convmgr.model import ConversationRecord
from convmgr.store.base import ConversationStore


class Turn:
    """A running turn: its id, the scope that aborts it, and when it is done."""

    __slots__ = ("abort_reason", "done", "resolving", "scope", "settled", "stopping", "turn_id")

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.scope = anyio.CancelScope()
        self.abort_reason: AbortReason = "interrupted"
        self.done = anyio.Event()
        # True once the terminal event is decided (the turn is being saved):
        # from then on an abort changes nothing.
        self.settled = False
        # Reading back a commit whose outcome is unknown (rare: made when needed),
        # cancelled when the server stops.
        self.resolving: anyio.CancelScope | None = None
        self.stopping = False

    def abort(self, reason: AbortReason) -> bool:
        """Stop the turn (its terminal event becomes turnAborted); whether this call did it."""
        if reason == "shutdown":
            # Nothing will wait for a store that cannot say whether the turn was saved.
            self.stopping = True
            if self.resolving is not None:
                self.resolving.cancel()
        if self.settled or self.scope.cancel_called:
            return False
        self.abort_reason = reason
        self.scope.cancel()
        return True


class Conversation:
    """Live state of a loaded conversation."""

    __slots__ = (
        "_always_allowed",
        "mcp_servers",
        "record",
        "seq",
        "sink",
        "store",
        "turn",
        "turns",
    )

    def __init__(
        self, record: ConversationRecord, sink: EventSink, store: ConversationStore
    ) -> None:
        self.record = record
        self.sink = sink
        # The manager's store, or an ephemeral conversation's private memory store.
        self.store = store
        self.seq = record.last_seq
        self.turn: Turn | None = None
        # Turns in the history (counted when first needed: echo's call ids).
        self.turns: int | None = None
        # Tools the client answered `allowAlways` for, until the process ends (made
        # when first needed: most conversations never ask, and idle ones are many).
        self._always_allowed: set[str] | None = None
        # The hub's keys of MCP servers this conversation brought (never stored).
        self.mcp_servers: tuple[str, ...] = ()

    @property
    def always_allowed(self) -> set[str]:
        """Tools the client answered `allowAlways` for in this conversation."""
        if self._always_allowed is None:
            self._always_allowed = set()
        return self._always_allowed

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""
        return self.record.conversation_id

    def emit(self, turn_id: str | None, event: Event) -> None:
        """Send an event with the next seq number."""
        self.seq += 1
        self.sink.emit(self.record.conversation_id, self.seq, turn_id, event)

    def note(self, turn_id: str | None, event: Event) -> None:
        """Send an event that takes no seq number (a dialect may drop it: ToolCallStarted)."""
        self.sink.emit(self.record.conversation_id, self.seq, turn_id, event)
