"""A loaded conversation: its record and live state (the history lives in the store)."""

from typing import Any, Protocol

import anyio

from convmgr.model import ConversationRecord, Item


class EventSink(Protocol):
    """Where the manager sends conversation events (the server writes them out)."""

    def emit(
        self, conversation_id: str, seq: int, turn_id: str | None, event: dict[str, Any]
    ) -> None:
        """Queue one event for the client, in order."""
        ...

    def congested(self) -> bool:
        """Whether the client is behind (then wait_ready() before emitting more)."""
        ...

    async def wait_ready(self) -> None:
        """Return when the client keeps up: backpressure for streaming turns."""
        ...


class Turn:
    """A running turn: its id, the scope that aborts it, and when it is done."""

    __slots__ = ("abort_reason", "done", "scope", "settled", "turn_id")

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.scope = anyio.CancelScope()
        self.abort_reason = "interrupted"
        self.done = anyio.Event()
        # True once the terminal event is decided (the turn is being saved):
        # from then on an abort changes nothing.
        self.settled = False

    def abort(self, reason: str) -> bool:
        """Stop the turn (its terminal event becomes turnAborted); whether this call did it."""
        if self.settled or self.scope.cancel_called:
            return False
        self.abort_reason = reason
        self.scope.cancel()
        return True


class Conversation:
    """Live state of a loaded conversation."""

    __slots__ = ("items", "record", "seq", "sink", "turn")

    def __init__(
        self, record: ConversationRecord, sink: EventSink, items: list[Item] | None = None
    ) -> None:
        self.record = record
        self.sink = sink
        self.seq = record.last_seq
        self.turn: Turn | None = None
        # Ephemeral conversations never reach the store: their history is here.
        self.items = items

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""
        return self.record.conversation_id

    def emit(self, turn_id: str | None, event: dict[str, Any]) -> None:
        """Send an event with the next seq number."""
        self.seq += 1
        self.sink.emit(self.record.conversation_id, self.seq, turn_id, event)
