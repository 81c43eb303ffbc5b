"""Rows of the SQLite store: records to and from conversations rows, items to item rows.

A conversation's settings are one JSON column (the fields it was given), so a
new setting needs no new column. Item and settings JSON is encoded here, with
one encoder for the whole store.
"""

import json
from collections.abc import Callable, Sequence
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
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _make_dump() -> Callable[[Any], str]:
    """The encoder's encode, minus the C encoder it builds afresh on every call.

    JSONEncoder.encode makes a new C encoder object for each value; building it
    once halves the cost of encoding a small item. Same output (same options);
    without the C accelerator (other Pythons) the plain encode is used.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return _ENCODER.encode
    # No markers (check_circular): a shared dict would be kept dirty by a failed
    # call and shared between threads. A circular value overflows the C stack
    # guard instead, and is then encoded again the plain way for the usual error.
    encoder = make(None, _ENCODER.default, basestring, None, ":", ",", False, False, True)
    join = "".join
    plain = _ENCODER.encode

    def dump(value: Any) -> str:
        if type(value) is str:
            return plain(value)
        try:
            return join(encoder(value, 0))
        except (RecursionError, TypeError, ValueError):
            return plain(value)  # the usual error (or, should it succeed, the same text)

    return dump


_dump: Final = _make_dump()


def _item_rows(items: Sequence[Item]) -> list[tuple[str, int]]:
    """(json, is_user) of each item: the row values of the items table."""
    # history.is_user_message, inlined: this runs on the event loop for every turn.
    return [
        (_dump(item), 1 if item.get("type") == "message" and item.get("role") == "user" else 0)
        for item in items
    ]


def _summary(record: ConversationRecord) -> tuple[Any, ...]:
    """What commit_turn and save_records write of a record, in _SUMMARY_SET's order.

    Taken on the event loop: the record may change while the job waits.
    """
    return (_dump(record.settings.given()), record.updated_at, record.last_seq, record.preview)


_SUMMARY_SET: Final = "settings = ?, updated_at = ?, last_seq = ?, preview = ?"
