"""The SQLite store's turn write path: items split into rows inside SQLite, exactly as
encoded; a batch written with a fixed number of statements; checkpoint settings."""

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_store_sqlite import hold_thread

from convmgr.model import (
    ConversationRecord,
    ConversationSettings,
    Item,
    is_user_message,
    message_item,
    utc_now,
)
from convmgr.store import sqlite as sqlite_module
from convmgr.store.db_thread import _Job
from convmgr.store.sqlite import SqliteStore
from convmgr.store.sqlite_commit import JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES

pytestmark = pytest.mark.anyio


def reference(value: Any) -> str:
    """What the store always wrote: the plain encoder with the store's options."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


TRICKY: list[Any] = [
    {},
    [],
    "plain string",
    'quote " backslash \\ slash / nul \x00 bell \x07 newline \n tab \t del \x7f',
    {"text": "é ü 中文 😀 \u2028 \u2029 \ud7ff \ue000 \uffff"},
    {"n": [0, -1, 2**63 - 1, 2**63, 2**70, -(2**70), 1.5, -0.0, 0.1, 1e16, 1e300, 1e-300]},
    {"f": [5e-324, 1.7976931348623157e308, 123456789.123456789, 1.0, -2.5e-7]},
    {"nested": {"a": [{"b": [None, True, False]}]}, "z": 1, "a": 2},
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    {"": "", 'k"ey': "v", "é": "x", "\\": "\\/"},
    ("tuple", "as", "list"),
    {"deep": json.loads("[" * 50 + "1" + "]" * 50)},
    {"type": "function_call_output", "output": "x" * 100_000},
]


def tricky_items() -> list[Item]:
    """Each tricky value inside an item, and a user message among them."""
    return [{"type": "x", "n": n, "v": value} for n, value in enumerate(TRICKY)] + [
        message_item("user", "hello")
    ]


def make_record(cid: str) -> ConversationRecord:
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
    )


async def commit(store: SqliteStore, record: ConversationRecord, items: list[Item]) -> None:
    record.history_length += len(items)
    record.updated_at = utc_now()
    await store.commit_turn(record, items)


def stored_rows(path: Path, cid: str) -> list[tuple[int, str, int]]:
    """(idx, json, is_user) of a conversation's rows, read with a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return list(
            conn.execute(
                "SELECT idx, json, is_user FROM items WHERE conversation_id = ? ORDER BY idx",
                (cid,),
            )
        )
    finally:
        conn.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    yield store
    await store.close()


async def test_tricky_items_round_trip_exactly(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    items = tricky_items()
    await store.create(make_record("created"), items)
    record = make_record("committed")
    await store.create(record, [])
    await commit(store, record, items[:3])
    await commit(store, record, items[3:])
    # Read back as a JSON round trip reads them (a tuple is a list, keys are strings).
    expected = [json.loads(reference(item)) for item in items]
    for cid in ("created", "committed"):
        assert await store.read_items(cid) == expected
        rows = stored_rows(store.path, cid)
        # Stored byte for byte as the encoder wrote each item: SQLite's split of the
        # array changes nothing in it.
        assert [row[1] for row in rows] == [reference(item) for item in items]
        assert [row[0] for row in rows] == list(range(len(items)))


async def test_is_user_is_marked_as_history_does(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    items: list[Item] = [
        message_item("user", "q"),
        message_item("assistant", "a"),
        {"type": "message", "role": "system", "content": []},
        {"type": "reasoning", "text": "r"},
        {"type": "user", "role": "user"},
        {"role": "user"},
        {"type": "message"},
        {"type": "message", "role": 1},
        {"type": ["message"], "role": "user"},
        {"type": "message", "role": "user ", "content": []},
        {"role": "user", "type": "message"},
    ]
    record = make_record("c")
    await store.create(make_record("created"), items)
    await store.create(record, [])
    await commit(store, record, items)
    expected = [int(is_user_message(item)) for item in items]
    assert expected.count(1) == 2
    for cid in ("created", "c"):
        assert [row[2] for row in stored_rows(store.path, cid)] == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_non_finite_numbers_are_refused_and_nothing_is_stored(
    sqlite_store: SqliteStore, bad: float
) -> None:
    store = sqlite_store
    record = make_record("c")
    await store.create(record, [])
    with pytest.raises(ValueError, match="JSON compliant"):
        await commit(store, record, [{"type": "x", "v": [1, bad]}])
    with pytest.raises(ValueError, match="JSON compliant"):
        await store.create(make_record("d"), [{"type": "x", "v": bad}])
    stored = await store.get("c")
    assert stored is not None and stored.history_length == 0
    assert await store.read_items("c") == []
    assert await store.get("d") is None


async def gather_one_batch(
    store: SqliteStore, commits: list[tuple[ConversationRecord, list[Item]]]
) -> tuple[list[int], list[BaseException | None]]:
    """Run the commits as one batch: (the batch sizes seen, each commit's error)."""
    batches: list[int] = []
    run_batch = store._commit_batch_sync

    def spy(jobs: list[_Job]) -> None:
        batches.append(len(jobs))
        run_batch(jobs)

    store._commit_batch_sync = spy  # type: ignore[method-assign]
    errors: list[BaseException | None] = [None] * len(commits)

    async def one(n: int) -> None:
        record, items = commits[n]
        try:
            await commit(store, record, items)
        except Exception as exc:
            errors[n] = exc

    gate = threading.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_thread, store, gate)
            await anyio.wait_all_tasks_blocked()
            for n in range(len(commits)):
                tg.start_soon(one, n)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    finally:
        del store._commit_batch_sync
    return batches, errors


async def test_turns_queued_while_the_thread_is_busy_are_one_batch(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turns that end in different passes of the loop while the thread works on
    something else are committed together: the queued batches are merged."""
    store = sqlite_store
    records = [make_record(f"c{n}") for n in range(6)]
    for record in records:
        await store.create(record, [])
    batches: list[int] = []
    real_commit_turns = sqlite_module.commit_turns

    def counting(conn: sqlite3.Connection, turns: Any) -> list[Exception | None]:
        batches.append(len(turns))
        return real_commit_turns(conn, turns)

    # The store's own bound method runs the batch (no spy in its place).
    monkeypatch.setattr(sqlite_module, "commit_turns", counting)
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        for record in records:
            # One turn per pass of the loop: each is a queue entry of its own
            # (handed over by a loop callback, hence the checkpoint).
            tg.start_soon(commit, store, record, [message_item("user", "u")])
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert batches == [6]
    for record in records:
        assert [row[1] for row in stored_rows(store.path, record.conversation_id)] == [
            reference(message_item("user", "u"))
        ]


async def test_a_batch_is_one_insert_whatever_its_size(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    records = [make_record(f"c{n}") for n in range(30)]
    for record in records:
        await store.create(record, [])
    statements: list[str] = []

    def trace(on: bool) -> None:
        store._db().set_trace_callback(statements.append if on else None)

    await store._run(trace, True)
    batches, errors = await gather_one_batch(
        store,
        [
            (record, [message_item("user", f"{n}"), message_item("assistant", "a")])
            for n, record in enumerate(records)
        ],
    )
    await store._run(trace, False)
    assert batches == [30] and errors == [None] * 30
    inserts = [s for s in statements if "INSERT INTO items" in s]
    assert len(inserts) == 1
    for n, record in enumerate(records):
        assert await store.read_items(record.conversation_id) == [
            message_item("user", f"{n}"),
            message_item("assistant", "a"),
        ]


async def test_turns_of_one_conversation_in_one_batch_stay_in_order(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    record = make_record("c")
    await store.create(record, [message_item("system", "s")])
    record.history_length = 1
    other = make_record("other")
    await store.create(other, [])
    turns = [[message_item("user", f"q{n}"), message_item("assistant", f"a{n}")] for n in range(3)]
    batches, errors = await gather_one_batch(
        store, [(record, turns[0]), (other, turns[1]), (record, turns[1]), (record, turns[2])]
    )
    assert batches == [4] and errors == [None] * 4
    assert await store.read_items("c") == [
        message_item("system", "s"),
        *turns[0],
        *turns[1],
        *turns[2],
    ]
    assert [row[0] for row in stored_rows(store.path, "c")] == list(range(7))
    stored = await store.get("c")
    assert stored is not None and stored.history_length == 7
    # The summary of the last turn is the one kept.
    assert stored.updated_at == record.updated_at
    assert await store.read_items("other") == turns[1]


async def test_a_turn_that_cannot_be_bound_fails_alone(sqlite_store: SqliteStore) -> None:
    """A lone surrogate encodes to JSON but not to UTF-8: that turn fails, its batch does not."""
    store = sqlite_store
    records = [make_record(f"c{n}") for n in range(5)]
    for record in records:
        await store.create(record, [])
    commits = [(record, [message_item("user", record.conversation_id)]) for record in records]
    commits[2] = (records[2], [message_item("user", "lone \ud800 surrogate")])
    batches, errors = await gather_one_batch(store, commits)
    assert batches == [5]
    assert [error is None for error in errors] == [True, True, False, True, True]
    assert isinstance(errors[2], UnicodeEncodeError)
    for n, record in enumerate(records):
        expected = [] if n == 2 else [message_item("user", f"c{n}")]
        assert await store.read_items(record.conversation_id) == expected
    stored = await store.get("c2")
    assert stored is not None and stored.history_length == 0


async def test_conversation_ids_reach_sqlite_intact(sqlite_store: SqliteStore) -> None:
    """Each id names its conversation inside the batch's JSON, escapes and all."""
    store = sqlite_store
    ids = ['q"uote', "back\\slash", "é中😀", "nl\nx", "\u2028", "tab\t", "x" * 128, "{}", "[0]"]
    records = [make_record(cid) for cid in ids]
    for record in records:
        await store.create(record, [])
    batches, errors = await gather_one_batch(
        store, [(record, [message_item("user", record.conversation_id)]) for record in records]
    )
    assert batches == [len(ids)] and errors == [None] * len(ids)
    for cid in ids:
        assert await store.read_items(cid) == [message_item("user", cid)]
    # A NUL would cut the id short inside SQLite: refused, nothing written.
    record = make_record("nul\x00id")
    await store.create(record, [])
    with pytest.raises(ValueError, match="NUL"):
        await commit(store, record, [message_item("user", "lost")])
    assert await store.read_items("nul\x00id") == []


async def test_job_errors_reach_the_caller(sqlite_store: SqliteStore) -> None:
    def boom() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await sqlite_store._run(boom)
    assert await sqlite_store._run(lambda: 42) == 42


async def test_checkpoint_settings(sqlite_store: SqliteStore) -> None:
    store = sqlite_store

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
