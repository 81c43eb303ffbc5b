"""Rows of the SQLite store: records to and from conversations rows, items to item rows.

Item and metadata JSON is encoded here, with one encoder for the whole store.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from convmgr.model import ConversationRecord, Item

_COLUMNS: Final = (
    "conversation_id, provider, model, instructions, cwd, metadata, ephemeral, temperature, "
    "max_output_tokens, created_at, updated_at, forked_from, history_length, last_seq, preview"
)


def _record_from_row(row: Sequence[Any]) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row[0],
        provider=row[1],
        model=row[2],
        instructions=row[3],
        cwd=row[4],
        metadata=None if row[5] is None else json.loads(row[5]),
        ephemeral=bool(row[6]),
        temperature=row[7],
        max_output_tokens=row[8],
        created_at=row[9],
        updated_at=row[10],
        forked_from=row[11],
        history_length=row[12],
        last_seq=row[13],
        preview=row[14],
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
    return (
        record.provider,
        record.model,
        record.instructions,
        record.cwd,
        None if record.metadata is None else _dump(record.metadata),
        record.temperature,
        record.max_output_tokens,
        record.updated_at,
        record.last_seq,
        record.preview,
    )


_SUMMARY_SET: Final = (
    "provider = ?, model = ?, instructions = ?, cwd = ?, metadata = ?, temperature = ?, "
    "max_output_tokens = ?, updated_at = ?, last_seq = ?, preview = ?"
)
