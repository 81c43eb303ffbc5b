"""The in-memory store (`--no-store`): conversations last as long as the process."""

import base64
import bisect
from collections.abc import Callable, Sequence
from dataclasses import replace

from convmgr.model import (
    ConversationExists,
    ConversationNotFound,
    ConversationRecord,
    Item,
    preview_of,
    truncate_after_dropping_last_messages,
)


def encode_cursor(updated_at: str, conversation_id: str) -> str:
    """An opaque keyset cursor: the sort key of the last record of a page."""
    raw = f"{updated_at}\x00{conversation_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The sort key inside a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated_at, conversation_id = raw.split("\x00")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    return updated_at, conversation_id


def cut_page(
    rows: list[ConversationRecord], limit: int
) -> tuple[list[ConversationRecord], str | None]:
    """The first limit of up to limit + 1 records, and the next cursor when there is one more."""
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit and page:
        last = page[-1]
        next_cursor = encode_cursor(last.updated_at, last.conversation_id)
    return page, next_cursor


class MemoryStore:
    """Records and history in dicts; pages are cut from a sorted index."""

    def __init__(self) -> None:
        self._records: dict[str, ConversationRecord] = {}
        self._items: dict[str, list[Item]] = {}
        # (updated_at, id) ascending; listing walks it from the end.
        self._order: list[tuple[str, str]] = []

    @property
    def persistent(self) -> bool:
        """Memory dies with the process."""
        return False

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to flush."""

    async def create(
        self, record: ConversationRecord, items: Sequence[Item], *, lease: bool = False
    ) -> None:
        """Store a new conversation (one process: no lease to take)."""
        if record.conversation_id in self._records:
            raise ConversationExists(record.conversation_id)
        self._records[record.conversation_id] = replace(record)
        self._items[record.conversation_id] = list(items)
        bisect.insort(self._order, (record.updated_at, record.conversation_id))

    async def commit_turn(self, record: ConversationRecord, items: Sequence[Item]) -> None:
        """Append a turn's items and update the summary."""
        old = self._records.get(record.conversation_id)
        if old is None:
            return
        self._unindex(old)
        self._items[record.conversation_id].extend(items)
        self._records[record.conversation_id] = replace(record)
        bisect.insort(self._order, (record.updated_at, record.conversation_id))

    async def save_records(self, records: Sequence[ConversationRecord]) -> None:
        """Save summaries and settings; the stored history length is kept."""
        for record in records:
            old = self._records.get(record.conversation_id)
            if old is None:
                continue
            self._unindex(old)
            self._records[record.conversation_id] = replace(
                record, history_length=old.history_length
            )
            bisect.insort(self._order, (record.updated_at, record.conversation_id))

    async def fork_history(
        self,
        source_id: str,
        record: ConversationRecord,
        drop_last_messages: int,
        *,
        lease: bool = False,
    ) -> int:
        """Create the fork from a truncated copy of the source's items."""
        if source_id not in self._records:
            raise ConversationNotFound(source_id)
        items = truncate_after_dropping_last_messages(self._items[source_id], drop_last_messages)
        record.history_length = len(items)
        record.preview = preview_of(items)
        await self.create(record, items)
        return len(items)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """A copy of the stored record."""
        record = self._records.get(conversation_id)
        return None if record is None else replace(record)

    async def read_items(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        """A slice of the history."""
        items = self._items.get(conversation_id, [])
        end = None if limit is None else offset + limit
        return items[offset:end]

    async def list(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ConversationRecord], str | None]:
        """Newest first, after the cursor's key."""
        end = len(self._order)
        if cursor is not None:
            end = bisect.bisect_left(self._order, decode_cursor(cursor))
        start = max(0, end - limit)
        keys = self._order[start:end][::-1]
        page = [replace(self._records[cid]) for _, cid in keys]
        next_cursor = encode_cursor(*keys[-1]) if start > 0 and keys else None
        return page, next_cursor

    async def delete(self, conversation_id: str) -> bool:
        """Forget a conversation."""
        record = self._records.pop(conversation_id, None)
        if record is None:
            return False
        self._unindex(record)
        del self._items[conversation_id]
        return True

    def watch_leases(self, lost: Callable[[str], None]) -> None:
        """A memory store belongs to one process: no lease is ever taken over."""

    async def acquire(self, conversation_id: str) -> None:
        """One process: nothing to lock."""

    async def release(self, conversation_id: str) -> None:
        """One process: nothing to unlock."""

    def _unindex(self, record: ConversationRecord) -> None:
        key = (record.updated_at, record.conversation_id)
        index = bisect.bisect_left(self._order, key)
        if index < len(self._order) and self._order[index] == key:
            del self._order[index]
