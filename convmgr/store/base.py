"""The interface every conversation store implements."""

from collections.abc import Callable, Sequence
from typing import Protocol

from convmgr.model import ConversationRecord, Item


class ConversationStore(Protocol):
    """Where conversations and their history live.

    The store is the source of truth for history: a loaded conversation keeps
    only its record in memory. Ephemeral conversations are never given to it.
    """

    @property
    def persistent(self) -> bool:
        """Whether conversations outlive the process."""
        ...

    async def open(self) -> None:
        """Prepare the store for use (create files, run migrations)."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release every lease this process holds."""
        ...

    async def create(
        self, record: ConversationRecord, items: Sequence[Item], *, lease: bool = False
    ) -> None:
        """Store a new conversation with its initial history; ConversationExists if taken.

        With lease, also take this process's lease on it (as acquire does), in
        the same transaction: a failure leaves neither the conversation nor a lease.
        A storage failure raises StorageFailed, with nothing written.
        """
        ...

    async def commit_turn(self, record: ConversationRecord, items: Sequence[Item]) -> None:
        """Append one turn's items and save the record's summary, in one transaction."""
        ...

    async def save_records(self, records: Sequence[ConversationRecord]) -> None:
        """Save the summaries/settings of several records in one transaction; unknown ids ignored.

        What is saved is what commit_turn saves of a record (settings, updated_at,
        last_seq, preview); the history and its length are left as they are.
        """
        ...

    async def fork_history(
        self,
        source_id: str,
        record: ConversationRecord,
        drop_last_messages: int,
        *,
        lease: bool = False,
    ) -> int:
        """Create `record`'s conversation (as create does) with the source's history, truncated.

        The fork rule is history.truncate_after_dropping_last_messages: drop the
        last `drop_last_messages` user messages and everything after each. The
        copy happens inside the store, without reading the history into memory.
        Sets record.history_length and record.preview (the first kept user
        message) to what was stored, and returns the new history length.
        ConversationExists if the record's id is taken, ConversationNotFound if
        the source is not stored. `lease` as for create.
        """
        ...

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """The stored record, or None."""
        ...

    async def read_items(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        """History items [offset, offset + limit) in order; all from offset when limit is None.

        Any offset and limit up to 2**63 - 1 work. A cancelled caller does not
        wait for a read to finish.
        """
        ...

    async def list(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ConversationRecord], str | None]:
        """A page of records, newest updated_at first, and the cursor of the next page.

        Raises ValueError for a cursor this store did not make.
        """
        ...

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its history; whether it existed."""
        ...

    async def acquire(self, conversation_id: str) -> None:
        """Take this process's lease on a conversation; ConversationLocked if another has it."""
        ...

    async def release(self, conversation_id: str) -> None:
        """Give up this process's lease on a conversation."""
        ...

    def watch_leases(self, lost: Callable[[str], None]) -> None:
        """Have `lost(id)` called when another process takes over a lease this one held.

        Only a store whose leases can be taken over from a live holder (one shared
        across hosts, with expiry) ever calls it.
        """
        ...
