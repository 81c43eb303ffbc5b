"""Rows of the SQLite store: records to and from conversations rows, items as JSON.

A conversation's settings are one JSON column (the fields it was given), so a
new setting needs no new column. Item and settings JSON is encoded here, with
one encoder for the whole store.
"""

import json
from collections.abc import Sequence
from typing import Any, Final

from convmgr.model import ConversationRecord, ConversationSettings, Item

_COLUMNS: Final = (
    "conversation_id, settings, created_at, updated_at, forked_from, history_length, "
    "last_seq, preview"
)


def _record_from_row(row: Sequence[Any]) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row[0],
        settings=ConversationSettings.from_given(json.loads(row[1])),
        created_at=row[2],
        updated_at=row[3],
        forked_from=row[4],
        history_length=row[5],
        last_seq=row[6],
        preview=row[7],
    )


def _record_row(record: ConversationRecord, history_length: int) -> tuple[Any, ...]:
    """A new conversation's row, in _COLUMNS' order."""
    return (
        record.conversation_id,
        _dump(record.settings.given()),
        record.created_at,
        record.updated_at,
        record.forked_from,
        history_length,
        record.last_seq,
        record.preview,
    )


# One encoder for every row: json.dumps with options builds a new one per call.
# JSON has no NaN or Infinity: refused here rather than written.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_dump: Final = _ENCODER.encode


def _items_json(items: Sequence[Item]) -> str:
    """The items as one JSON array: the store splits it into rows inside SQLite."""
    return _dump(items if isinstance(items, list) else list(items))


def _summary(record: ConversationRecord) -> tuple[Any, ...]:
    """What commit_turn and save_records write of a record, in _SUMMARY_SET's order.

    Taken on the event loop: the record may change while the job waits.
    """
    return (_dump(record.settings.given()), record.updated_at, record.last_seq, record.preview)


_SUMMARY_COLUMNS: Final = "settings, updated_at, last_seq, preview"
_SUMMARY_SET: Final = "settings = ?, updated_at = ?, last_seq = ?, preview = ?"
