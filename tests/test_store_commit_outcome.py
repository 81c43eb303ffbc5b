"""A turn commit whose COMMIT raises: resolved by reading back, never reported failed if stored.

Faults are injected into the store's connection: its next COMMIT either runs and
then raises (it reached the database: the outcome looks unknown to the store), or
raises without running (nothing reached the database). Either way the store must
report the truth, and the manager must end the turn accordingly.
"""

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from recorder import Recorder
from test_store_sqlite import hold_thread

from convmgr.core.manager import ConversationManager
from convmgr.model import (
    ConversationRecord,
    ConversationSettings,
    Item,
    StorageFailed,
    TurnSettings,
    message_item,
    utc_now,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.sqlite import SqliteStore
from convmgr.store.sqlite_commit import CommitOutcomeUnknown

pytestmark = pytest.mark.anyio


def io_error() -> sqlite3.OperationalError:
    """A disk I/O error as SQLite reports one."""
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_IOERR"  # type: ignore[attr-defined]
    return exc


class FaultyConnection:
    """The store's connection, whose next COMMIT is made to fail when armed.

    "after": the COMMIT runs, then raises. "instead": it raises without running.
    With `unreadable`, every statement after the fault raises too, until
    `heal()` or, with `heal_after`, until that many of them have failed.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.mode: str | None = None
        self.unreadable = False
        self.faults = 0
        self.heal_after: int | None = None
        self.failed_reads = 0
        self._broken = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self._broken:
            self.failed_reads += 1
            if self.heal_after is not None and self.failed_reads >= self.heal_after:
                self.heal()
            raise io_error()
        if sql == "COMMIT" and self.mode is not None:
            mode, self.mode = self.mode, None
            self.faults += 1
            self._broken = self.unreadable
            if mode == "after":
                self._conn.execute(sql)
            raise io_error()
        return self._conn.execute(sql, *args)

    def heal(self) -> None:
        self._broken = False
        self.unreadable = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, FaultyConnection]]:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    assert store._conn is not None
    conn = FaultyConnection(store._conn)
    store._conn = conn  # type: ignore[assignment]
    try:
        yield store, conn
    finally:
        conn.heal()
        await store.close()


def make_record(cid: str) -> ConversationRecord:
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
    )


def turn(n: int) -> list[Item]:
    return [message_item("user", f"question {n}"), message_item("assistant", f"answer {n}")]


async def commit(store: SqliteStore, record: ConversationRecord, items: list[Item]) -> None:
    record.history_length += len(items)
    record.last_seq += 3
    record.updated_at = utc_now()
    await store.commit_turn(record, items)


async def stored(store: SqliteStore, cid: str) -> tuple[int, list[Item]]:
    record = await store.get(cid)
    assert record is not None
    return record.history_length, await store.read_items(cid)


async def created(store: SqliteStore, count: int) -> list[ConversationRecord]:
    """`count` new conversations c0, c1, ... with empty histories, stored."""
    records = [make_record(f"c{n}") for n in range(count)]
    for record in records:
        await store.create(record, [])
    return records


async def test_a_commit_that_landed_before_its_error_is_reported_committed(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    store, conn = faulty
    record = make_record("c")
    await store.create(record, [])
    await commit(store, record, turn(1))
    conn.mode = "after"
    await commit(store, record, turn(2))  # no error: it is in the database
    assert conn.faults == 1
    assert await stored(store, "c") == (4, turn(1) + turn(2))
    # The next turn goes after it: nothing was written twice, idx stays dense.
    await commit(store, record, turn(3))
    assert await stored(store, "c") == (6, turn(1) + turn(2) + turn(3))
    got = await store.get("c")
    assert got is not None and got.last_seq == record.last_seq


async def test_a_commit_that_did_not_land_is_reported_failed(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    store, conn = faulty
    record = make_record("c")
    await store.create(record, [])
    await commit(store, record, turn(1))
    conn.mode = "instead"
    with pytest.raises(StorageFailed) as failed:
        await commit(store, record, turn(2))
    assert failed.value.reason == "io_error"
    assert not isinstance(failed.value, CommitOutcomeUnknown)
    assert await stored(store, "c") == (2, turn(1))
    record.history_length -= 2  # as the manager rolls its record back
    await commit(store, record, turn(3))
    assert await stored(store, "c") == (4, turn(1) + turn(3))


async def test_an_error_before_the_commit_is_reported_failed(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    store, _ = faulty
    record = make_record("c")
    await store.create(record, [])

    def fail_the_update(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TEMP TRIGGER fail_update BEFORE UPDATE ON main.conversations "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )

    await store._run(fail_the_update, store._db())
    with pytest.raises(sqlite3.IntegrityError, match="injected"):
        await commit(store, record, turn(1))
    assert await stored(store, "c") == (0, [])


async def test_a_summary_only_commit_is_resolved_too(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    store, conn = faulty
    record = make_record("c")
    await store.create(record, [])
    conn.mode = "after"
    await commit(store, record, [])
    got = await store.get("c")
    assert got is not None and (got.last_seq, got.updated_at) == (3, record.updated_at)
    conn.mode = "instead"
    with pytest.raises(StorageFailed):
        await commit(store, record, [])
    got = await store.get("c")
    assert got is not None and got.last_seq == 3


async def run_one_batch(
    store: SqliteStore, commits: list[tuple[ConversationRecord, list[Item]]]
) -> list[BaseException | None]:
    """The commits, queued behind a busy thread so that they form one batch; each error."""
    errors: list[BaseException | None] = [None] * len(commits)

    async def one(n: int) -> None:
        record, items = commits[n]
        try:
            await commit(store, record, items)
        except Exception as exc:
            errors[n] = exc

    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        for n in range(len(commits)):
            tg.start_soon(one, n)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    return errors


@pytest.mark.parametrize("bad_turn", [False, True])
async def test_a_batch_that_landed_is_reported_committed_and_not_redone(
    faulty: tuple[SqliteStore, FaultyConnection], bad_turn: bool
) -> None:
    """Also when one turn failed alone and the rest were redone under savepoints."""
    store, conn = faulty
    records = await created(store, 6)
    commits = [(record, turn(n)) for n, record in enumerate(records)]
    if bad_turn:
        commits[3] = (records[3], [message_item("user", "lone \ud800")])
    conn.mode = "after"
    errors = await run_one_batch(store, commits)
    assert conn.faults == 1
    for n, record in enumerate(records):
        if bad_turn and n == 3:
            assert isinstance(errors[n], UnicodeEncodeError)
            assert await stored(store, record.conversation_id) == (0, [])
        else:
            assert errors[n] is None
            assert await stored(store, record.conversation_id) == (2, turn(n))


async def test_a_batch_that_did_not_land_is_retried_turn_by_turn(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    """Nothing reached the database: the batch is redone (one turn at a time), once."""
    store, conn = faulty
    records = await created(store, 4)
    conn.mode = "instead"
    errors = await run_one_batch(store, [(record, turn(n)) for n, record in enumerate(records)])
    assert conn.faults == 1 and errors == [None] * 4
    for n, record in enumerate(records):
        assert await stored(store, record.conversation_id) == (2, turn(n))


async def test_an_outcome_that_cannot_be_read_back_is_never_written_twice(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> None:
    store, conn = faulty
    records = await created(store, 3)
    conn.mode = "after"
    conn.unreadable = True
    errors = await run_one_batch(store, [(record, turn(n)) for n, record in enumerate(records)])
    assert all(isinstance(error, CommitOutcomeUnknown) for error in errors), errors
    error = errors[0]
    assert isinstance(error, StorageFailed) and error.reason == "io_error"
    assert "may have been saved" in str(error)
    conn.heal()
    for n, record in enumerate(records):
        assert await stored(store, record.conversation_id) == (2, turn(n))


# --- through the manager ------------------------------------------------------------------


@pytest.fixture
async def managed(
    faulty: tuple[SqliteStore, FaultyConnection],
) -> AsyncIterator[tuple[ConversationManager, Recorder, SqliteStore, FaultyConnection]]:
    store, conn = faulty
    recorder = Recorder()
    async with ConversationManager(store, ProviderRegistry.echo_only(), recorder) as manager:
        yield manager, recorder, store, conn
        await manager.close_all()


async def test_the_manager_completes_a_turn_whose_commit_landed_before_an_error(
    managed: tuple[ConversationManager, Recorder, SqliteStore, FaultyConnection],
) -> None:
    manager, rec, store, conn = managed
    await manager.new_conversation("c", ConversationSettings())
    conn.mode = "after"
    manager.send_user_turn("c", ["hello"], TurnSettings())
    await rec.wait_for("c", "turnComplete")
    assert conn.faults == 1
    assert "turnFailed" not in rec.types("c")
    view = await manager.get_conversation("c")
    history = [message_item("user", "hello"), message_item("assistant", "hello")]
    assert view.record.history_length == 2
    assert await stored(store, "c") == (2, history)
    got = await store.get("c")
    assert got is not None and got.last_seq == view.record.last_seq


async def test_the_manager_fails_a_turn_whose_commit_did_not_land(
    managed: tuple[ConversationManager, Recorder, SqliteStore, FaultyConnection],
) -> None:
    manager, rec, store, conn = managed
    await manager.new_conversation("c", ConversationSettings())
    conn.mode = "instead"
    manager.send_user_turn("c", ["hello"], TurnSettings())
    failed = await rec.wait_for("c", "turnFailed")
    assert "could not save the turn" in failed["error"]["message"]
    assert "turnComplete" not in rec.types("c")
    view = await manager.get_conversation("c")
    assert view.record.history_length == 0
    assert await stored(store, "c") == (0, [])


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
async def test_an_unknown_outcome_is_read_back_until_the_store_answers(
    managed: tuple[ConversationManager, Recorder, SqliteStore, FaultyConnection], landed: bool
) -> None:
    """COMMIT fails and so do the reads after it: the turn is not reported until resolved."""
    manager, rec, store, conn = managed
    await manager.new_conversation("c", ConversationSettings())
    conn.mode = "after" if landed else "instead"
    conn.unreadable = True
    # The store's own read-back and the manager's first re-reads fail; a later one answers.
    conn.heal_after = 4
    manager.send_user_turn("c", ["hello"], TurnSettings())
    terminal = "turnComplete" if landed else "turnFailed"
    await rec.wait_for("c", terminal)
    assert conn.failed_reads >= 4
    types = rec.types("c")
    assert ("turnFailed" in types) is not landed and ("turnComplete" in types) is landed
    view = await manager.get_conversation("c")
    expected = [message_item("user", "hello"), message_item("assistant", "hello")]
    if landed:
        assert view.record.history_length == 2
        assert await stored(store, "c") == (2, expected)
    else:
        assert view.record.history_length == 0
        assert await stored(store, "c") == (0, [])
