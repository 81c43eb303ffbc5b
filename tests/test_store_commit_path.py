"""The SQLite store's per-turn fast path: item encoding, job outcomes, checkpoint settings."""

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from convmgr.model import (
    ConversationRecord,
    ConversationSettings,
    Item,
    is_user_message,
    message_item,
    utc_now,
)
from convmgr.store.sqlite import SqliteStore
from convmgr.store.sqlite_commit import JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES
from convmgr.store.sqlite_rows import _dump, _item_rows

pytestmark = pytest.mark.anyio


def reference(value: Any) -> str:
    """What the store always wrote: the plain encoder with the store's options."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


TRICKY: list[Any] = [
    {},
    [],
    "plain string",
    'quote " backslash \\ nul \x00 bell \x07 newline \n tab \t',
    {"text": "é ü 中文 😀 \u2028 \u2029 \ud7ff \ue000"},
    {"n": [0, -1, 2**70, 1.5, -0.0, 1e300, 1e-300, math.inf, -math.inf]},
    {"nested": {"a": [{"b": [None, True, False]}]}, "z": 1, "a": 2},
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    ("tuple", "as", "list"),
    message_item("user", "hello"),
    {"type": "function_call_output", "output": "x" * 100_000},
]


@pytest.mark.parametrize("value", TRICKY)
def test_dump_matches_the_plain_encoder(value: Any) -> None:
    assert _dump(value) == reference(value)


def test_dump_nan() -> None:
    assert _dump({"v": math.nan}) == reference({"v": math.nan}) == '{"v":NaN}'


def test_dump_errors_are_the_usual_ones() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        _dump({"a": circular})
    with pytest.raises(TypeError, match="not JSON serializable"):
        _dump({"a": object()})
    # A failed call leaves nothing behind: the same objects encode fine afterwards.
    shared = {"k": [1, 2]}
    with pytest.raises(TypeError):
        _dump([shared, object()])
    assert _dump([shared, shared]) == reference([shared, shared])


def test_item_rows_mark_user_messages_as_history_does() -> None:
    items: list[Item] = [
        message_item("user", "q"),
        message_item("assistant", "a"),
        {"type": "message", "role": "system", "content": []},
        {"type": "reasoning", "text": "r"},
        {"type": "user", "role": "user"},
        {"role": "user"},
    ]
    rows = _item_rows(items)
    assert [row[0] for row in rows] == [reference(item) for item in items]
    assert [row[1] for row in rows] == [int(is_user_message(item)) for item in items]


def make_record(cid: str) -> ConversationRecord:
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
    )


async def test_tricky_items_round_trip(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        record = make_record("c")
        await store.create(record, [])
        items: list[Item] = [
            {"type": "message", "role": "user", "content": [{"type": "text", "text": text}]}
            for text in ('q " \\ \x00 \n', "é 中文 😀 \u2028", "x" * 50_000)
        ]
        record.history_length += len(items)
        record.updated_at = utc_now()
        await store.commit_turn(record, items)
        assert await store.read_items("c") == items
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "s.sqlite3")
    try:
        stored = [row[0] for row in conn.execute("SELECT json FROM items ORDER BY idx")]
    finally:
        conn.close()
    assert stored == [reference(item) for item in items]


async def test_job_errors_reach_the_caller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:

        def boom() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await store._run(boom)
        assert await store._run(lambda: 42) == 42
    finally:
        await store.close()


async def test_checkpoint_settings(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:

        def pragmas() -> tuple[str, int, int, int]:
            conn = store._db()
            return (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
                conn.execute("PRAGMA journal_size_limit").fetchone()[0],
            )

        # WAL and synchronous=NORMAL (1) as before: only the checkpoint interval moved.
        assert await store._run(pragmas) == (
            "wal",
            1,
            WAL_AUTOCHECKPOINT_PAGES,
            JOURNAL_SIZE_LIMIT,
        )
    finally:
        await store.close()
