"""The store contract (MemoryStore and SqliteStore alike) and SqliteStore's own duties."""

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from convmgr.model import (
    SETTINGS_FIELDS,
    ConversationExists,
    ConversationLocked,
    ConversationRecord,
    ConversationSettings,
    Item,
    message_item,
    preview_of,
    utc_now,
)
from convmgr.store.base import ConversationStore
from convmgr.store.sqlite import (
    SCHEMA_VERSION,
    SQLITE_MAGIC,
    SqliteStore,
    StoreClosedError,
    StoreOpenError,
    _Job,
)

pytestmark = pytest.mark.anyio


def make_record(cid: str, items: list[Item] | None = None, **fields: object) -> ConversationRecord:
    """A record as the manager would build it."""
    now = utc_now()
    record = ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
        history_length=len(items or []),
        preview=preview_of(items or []),
    )
    for name, value in fields.items():
        if name in SETTINGS_FIELDS:
            record.settings = replace(record.settings, **{name: value})
        else:
            setattr(record, name, value)
    return record


def turn(n: int) -> list[Item]:
    """The two items of a short turn."""
    return [message_item("user", f"question {n}"), message_item("assistant", f"answer {n}")]


async def add_turn(store: ConversationStore, record: ConversationRecord, items: list[Item]) -> None:
    """Commit a turn the way the manager does: bump the summary, then store."""
    record.updated_at = utc_now()
    record.history_length += len(items)
    record.last_seq += 5
    if record.preview is None:
        record.preview = preview_of(items)
    await store.commit_turn(record, items)


# --- the contract ----------------------------------------------------------------------


async def test_create_and_get_round_trip(store: ConversationStore) -> None:
    items = turn(1)
    record = make_record(
        "conv-1",
        items,
        instructions="be brief",
        cwd="/tmp/x",
        metadata={"tags": ["a", "é"], "n": 1},
        temperature=0.25,
        max_output_tokens=99,
        forked_from="conv-0",
        last_seq=3,
    )
    await store.create(record, items)
    assert await store.get("conv-1") == record
    assert await store.get("missing") is None
    assert await store.read_items("conv-1") == items
    with pytest.raises(ConversationExists):
        await store.create(make_record("conv-1"), [])
    # The failed create changed nothing.
    assert await store.get("conv-1") == record
    assert await store.read_items("conv-1") == items


async def test_read_items_pages(store: ConversationStore) -> None:
    items = [message_item("user", f"m{i}") for i in range(25)]
    await store.create(make_record("c", items), items)
    assert await store.read_items("c", 0, 10) == items[:10]
    assert await store.read_items("c", 10, 10) == items[10:20]
    assert await store.read_items("c", 20, 10) == items[20:]
    assert await store.read_items("c", 24) == items[24:]
    assert await store.read_items("c", 25) == []
    assert await store.read_items("c", 30, 5) == []
    assert await store.read_items("c", 3, 0) == []
    assert await store.read_items("nope") == []


async def test_commit_turn_appends_and_updates_summary(store: ConversationStore) -> None:
    first = [message_item("system", "setup")]
    record = make_record("c", first)
    await store.create(record, first)
    expected = list(first)
    for n in range(3):
        await add_turn(store, record, turn(n))
        expected += turn(n)
    stored = await store.get("c")
    assert stored == record
    assert stored is not None and stored.history_length == 7
    assert stored.preview == "question 0"
    assert await store.read_items("c") == expected
    assert await store.read_items("c", 5, 2) == expected[5:7]


async def test_commit_turn_of_unknown_conversation_is_ignored(store: ConversationStore) -> None:
    await store.commit_turn(make_record("ghost"), turn(1))
    assert await store.get("ghost") is None
    assert await store.read_items("ghost") == []


async def test_list_newest_first_and_moves_on_update(store: ConversationStore) -> None:
    records = []
    for n in range(5):
        record = make_record(f"c{n}")
        await store.create(record, [])
        records.append(record)
    page, cursor = await store.list(None, 10)
    assert [r.conversation_id for r in page] == ["c4", "c3", "c2", "c1", "c0"]
    assert cursor is None
    await add_turn(store, records[1], turn(1))
    page, _ = await store.list(None, 2)
    assert [r.conversation_id for r in page] == ["c1", "c4"]
    assert page[0].preview == "question 1"


async def test_list_pages_exactly(store: ConversationStore) -> None:
    for n in range(100):
        await store.create(make_record(f"c{n:03}"), [])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list(cursor, 50)
        pages += 1
        seen += [r.conversation_id for r in page]
        if cursor is None:
            break
    assert pages == 2
    assert seen == [f"c{n:03}" for n in reversed(range(100))]


async def test_list_while_creating_1200(store: ConversationStore) -> None:
    for n in range(300):
        await store.create(make_record(f"old-{n:04}"), [])
    page, cursor = await store.list(None, 50)
    existing = {f"old-{n:04}" for n in range(300)}
    behind: set[str] = set()
    seen = [r.conversation_id for r in page]
    created = 0
    # Between pages, 150 conversations appear: most newer than everything (ahead
    # of the cursor), every third stamped in the past (behind it: imports do that).
    while cursor is not None:
        for _ in range(150):
            if created == 1200:
                break
            cid = f"new-{created:04}"
            record = make_record(cid)
            if created % 3 == 0:
                # Older than anything listed so far: always behind the cursor.
                record.updated_at = f"2000-01-01T00:00:00.{999_999 - created:06}Z"
                behind.add(cid)
            await store.create(record, [])
            created += 1
        page, cursor = await store.list(cursor, 50)
        assert len(page) <= 50
        seen += [r.conversation_id for r in page]
    assert created == 1200
    assert len(seen) == len(set(seen)), "a conversation was listed twice"
    assert existing <= set(seen), "a conversation that existed at the first page was missed"
    assert behind <= set(seen), "a conversation behind the cursor was missed"


async def test_bad_cursor(store: ConversationStore) -> None:
    for bad in ["!!!", "bm90LW9uZS1vZi1vdXJz", "", "AAAA"]:
        with pytest.raises(ValueError):
            await store.list(bad, 10)


async def test_delete(store: ConversationStore) -> None:
    items = turn(1)
    await store.create(make_record("c", items), items)
    await store.create(make_record("other", items), items)
    assert await store.delete("c") is True
    assert await store.delete("c") is False
    assert await store.get("c") is None
    assert await store.read_items("c") == []
    page, _ = await store.list(None, 10)
    assert [r.conversation_id for r in page] == ["other"]
    # The id is free again, with a fresh history.
    await store.create(make_record("c"), [])
    assert await store.read_items("c") == []
    assert await store.read_items("other") == items


async def test_acquire_and_release_by_one_process(store: ConversationStore) -> None:
    await store.create(make_record("c"), [])
    await store.acquire("c")
    await store.acquire("c")  # re-entrant for its holder
    await store.release("c")
    await store.release("c")
    await store.acquire("c")


# --- SqliteStore: files, schema, errors ----------------------------------------------


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = SqliteStore(path)
    await first.open()
    record = make_record("c", turn(0))
    await first.create(record, turn(0))
    await add_turn(first, record, turn(1))
    await first.close()
    await first.close()  # idempotent

    second = SqliteStore(path)
    await second.open()
    try:
        assert await second.get("c") == record
        assert await second.read_items("c") == turn(0) + turn(1)
        assert await second.schema_version() == SCHEMA_VERSION
        assert await second.integrity_check() == ["ok"]
    finally:
        await second.close()


async def test_file_modes_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "s.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create(make_record("c"), [])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_database_work_runs_off_the_loop_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    threads: list[int] = []
    original = store._get_sync

    def spy(conversation_id: str) -> ConversationRecord | None:
        threads.append(threading.get_ident())
        return original(conversation_id)

    store._get_sync = spy  # type: ignore[method-assign]
    try:
        await store.get("c")
    finally:
        await store.close()
    assert threads and threading.get_ident() not in threads


async def test_use_after_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.get("c")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreOpenError, match="newer"):
        await SqliteStore(path).open()


async def test_path_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreOpenError) as info:
        await SqliteStore(blocker / "sub" / "s.sqlite3").open()
    assert "\n" not in str(info.value)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")
async def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreOpenError, match="not writable"):
            await SqliteStore(locked / "s.sqlite3").open()
    finally:
        locked.chmod(0o700)


async def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreOpenError, match="not a regular file"):
        await SqliteStore(tmp_path).open()


@pytest.mark.parametrize(
    "content",
    [
        b"hello, I am a text file\n" * 100,
        bytes(range(256)) * 64,
        SQLITE_MAGIC[:-1],  # shorter than the header
        b"SQLite format 2\x00" + b"\x00" * 4096,
    ],
)
async def test_non_database_file_is_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    path.chmod(0o644)
    before = path.stat()
    with pytest.raises(StoreOpenError, match="not a SQLite database") as info:
        await SqliteStore(path).open()
    assert "\n" not in str(info.value)
    assert path.read_bytes() == content
    after = path.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_size) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_size,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    content = path.read_bytes()
    with pytest.raises(StoreOpenError, match="not a convmgr store"):
        await SqliteStore(path).open()
    assert path.read_bytes() == content


async def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.touch()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create(make_record("c"), [])
        assert await store.integrity_check() == ["ok"]
    finally:
        await store.close()


# --- SqliteStore: leases -------------------------------------------------------------


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file, as two convmgr processes would have."""
    path = tmp_path / "shared.sqlite3"
    a, b = SqliteStore(path), SqliteStore(path)
    await a.open()
    await b.open()
    await a.create(make_record("c"), [])
    yield a, b
    await a.close()
    await b.close()


def insert_lease(path: Path, cid: str, pid: int, start: int | None, boot_id: str | None) -> None:
    """Write a lease row as another process would have."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
            (cid, pid, "someone-else", start, boot_id, utc_now()),
        )
    conn.close()


def proc_start(pid: int) -> int | None:
    """A process's start time in clock ticks, as the store records it."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rfind(")") + 2 :].split()[19])


def boot_id() -> str | None:
    """This boot's id, as the store records it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


async def test_lease_excludes_other_store(pair: tuple[SqliteStore, SqliteStore]) -> None:
    a, b = pair
    await a.acquire("c")
    with pytest.raises(ConversationLocked) as info:
        await b.acquire("c")
    assert info.value.data is not None and info.value.data["conversationId"] == "c"
    # Both can still read.
    assert await b.get("c") is not None
    with pytest.raises(ConversationLocked):
        await b.delete("c")
    await b.release("c")  # not its lease: no effect
    with pytest.raises(ConversationLocked):
        await b.acquire("c")
    await a.release("c")
    await b.acquire("c")
    with pytest.raises(ConversationLocked):
        await a.acquire("c")


async def test_close_releases_every_lease(pair: tuple[SqliteStore, SqliteStore]) -> None:
    a, b = pair
    await a.create(make_record("d"), [])
    await a.acquire("c")
    await a.acquire("d")
    await a.close()
    await b.acquire("c")
    await b.acquire("d")


async def test_live_foreign_process_keeps_its_lease(
    pair: tuple[SqliteStore, SqliteStore],
) -> None:
    a, _ = pair
    parent = os.getppid()
    insert_lease(a.path, "c", parent, proc_start(parent), boot_id())
    with pytest.raises(ConversationLocked):
        await a.acquire("c")


async def test_dead_process_lease_is_taken_over(pair: tuple[SqliteStore, SqliteStore]) -> None:
    a, _ = pair
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start(child.pid)
    child.wait()
    insert_lease(a.path, "c", child.pid, start, boot_id())
    await a.acquire("c")


async def test_reused_pid_does_not_keep_a_lease(pair: tuple[SqliteStore, SqliteStore]) -> None:
    a, _ = pair
    if proc_start(os.getppid()) is None:
        pytest.skip("no /proc: start times are unknown")
    # The parent is alive, but the row's start time is another process's.
    insert_lease(a.path, "c", os.getppid(), 1, boot_id())
    await a.acquire("c")


async def test_lease_from_before_a_reboot_is_taken_over(
    pair: tuple[SqliteStore, SqliteStore],
) -> None:
    a, _ = pair
    if boot_id() is None:
        pytest.skip("no boot id on this system")
    parent = os.getppid()
    insert_lease(a.path, "c", parent, proc_start(parent), "another-boot")
    await a.acquire("c")


async def test_closed_store_in_this_process_is_dead(pair: tuple[SqliteStore, SqliteStore]) -> None:
    a, _ = pair
    # Our own pid and start time, but a token no open store has: a store that went away.
    insert_lease(a.path, "c", os.getpid(), proc_start(os.getpid()), boot_id())
    await a.acquire("c")


CHILD = textwrap.dedent(
    """
    import sys, anyio
    from pathlib import Path
    from convmgr.store.sqlite import SqliteStore

    async def main():
        store = SqliteStore(Path(sys.argv[1]))
        await store.open()
        await store.acquire("c")
        print("held", flush=True)
        sys.stdin.read()  # until killed

    anyio.run(main)
    """
)


async def test_lease_of_killed_process_is_recovered(
    pair: tuple[SqliteStore, SqliteStore],
) -> None:
    a, _ = pair
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(a.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "held\n"  # the lease is taken: synchronised by pipe
        with pytest.raises(ConversationLocked) as info:
            await a.acquire("c")
        assert info.value.data is not None and info.value.data["holder"] == f"pid {child.pid}"
        child.kill()
        # Wait until it has exited but leave it unreaped: a zombie still answers
        # kill(pid, 0), and must count as dead.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        await a.acquire("c")
    finally:
        child.kill()
        child.wait()
    assert await a.integrity_check() == ["ok"]


async def test_records_are_copies(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        record = make_record("c", metadata={"k": 1})
        await store.create(record, [])
        got = await store.get("c")
        assert got is not None
        got.settings = replace(got.settings, metadata={"changed": True})
        assert await store.get("c") == replace(record)
    finally:
        await store.close()


# --- SqliteStore: the database thread and group commit ---------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open SqliteStore with 20 empty conversations c0..c19."""
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    for n in range(20):
        await store.create(make_record(f"c{n}"), [])
    yield store
    await store.close()


async def hold_thread(store: SqliteStore, gate: threading.Event) -> None:
    """Keep the store's thread busy until the gate opens, so jobs queue up behind."""
    await store._run(gate.wait)


async def test_queued_commits_share_a_transaction(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    batches: list[int] = []
    run_batch = store._commit_batch_sync

    def spy(jobs: list[_Job]) -> None:
        batches.append(len(jobs))
        run_batch(jobs)

    store._commit_batch_sync = spy  # type: ignore[method-assign]
    records = [make_record(f"c{n}") for n in range(20)]
    records[7].preview = {"not": "bindable"}  # type: ignore[assignment]  # this turn fails
    failures: list[str] = []

    async def commit(record: ConversationRecord) -> None:
        try:
            await add_turn(store, record, turn(1))
        except sqlite3.Error:
            failures.append(record.conversation_id)

    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        for record in records:
            tg.start_soon(commit, record)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert batches == [20]
    assert failures == ["c7"]
    for n in range(20):
        expected = [] if n == 7 else turn(1)
        assert await store.read_items(f"c{n}") == expected
    stored = await store.get("c7")
    assert stored is not None and stored.history_length == 0


async def test_close_finishes_queued_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    await store.open()
    records = [make_record(f"c{n}") for n in range(5)]
    for record in records:
        await store.create(record, [])
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        for record in records:
            tg.start_soon(add_turn, store, record, turn(2))
        tg.start_soon(store.close)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        for record in records:
            assert await reopened.read_items(record.conversation_id) == turn(2)
    finally:
        await reopened.close()


async def test_cancelled_caller_still_waits_for_its_commit(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    record = make_record("c0")
    gate = threading.Event()
    returned = anyio.Event()

    async def commit(scope: anyio.CancelScope) -> None:
        with scope:
            await add_turn(store, record, turn(3))
        returned.set()

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(commit, scope)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert not returned.is_set()  # still waiting: the job is queued and will run
        gate.set()
    assert returned.is_set()
    assert await store.read_items("c0") == turn(3)


async def test_task_cancel_waits_for_the_commit_then_goes_through(
    sqlite_store: SqliteStore,
) -> None:
    """A plain asyncio Task.cancel: the caller waits for its queued commit, then is cancelled."""
    store = sqlite_store
    record = make_record("c0")
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_thread, store, gate)
        await anyio.wait_all_tasks_blocked()
        task = asyncio.ensure_future(add_turn(store, record, turn(3)))
        await anyio.wait_all_tasks_blocked()
        task.cancel()
        await anyio.wait_all_tasks_blocked()
        assert not task.done()  # still waiting: the job is queued and will run
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await store.read_items("c0") == turn(3)


WRITER = textwrap.dedent(
    """
    import sys, anyio
    from pathlib import Path
    from convmgr.model import ConversationRecord, ConversationSettings, message_item, utc_now
    from convmgr.store.sqlite import SqliteStore

    async def main():
        store = SqliteStore(Path(sys.argv[1]))
        await store.open()
        tag = sys.argv[2]
        records = []
        for n in range(4):
            settings = ConversationSettings(provider="echo", model="echo")
            record = ConversationRecord(f"{tag}-{n}", settings, created_at=utc_now())
            await store.create(record, [])
            records.append(record)
        n = 0
        while True:
            record = records[n % 4]
            await store.acquire(record.conversation_id)
            items = [message_item("user", f"q{n}" * 50), message_item("assistant", f"a{n}" * 500)]
            record.history_length += 2
            record.updated_at = utc_now()
            await store.commit_turn(record, items)
            print(record.conversation_id, n, flush=True)  # acknowledged only once committed
            n += 1

    anyio.run(main)
    """
)


async def test_kill_9_while_committing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    acknowledged: dict[str, list[int]] = {}
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"r{round_}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        # Kill at a different point each round, while the child keeps committing.
        for _ in range(7 + 13 * round_):
            cid, n = child.stdout.readline().split()
            acknowledged.setdefault(cid, []).append(int(n))
        child.kill()
        child.wait()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.integrity_check() == ["ok"]
        for cid, turns in acknowledged.items():
            record = await store.get(cid)
            assert record is not None
            items = await store.read_items(cid)
            # Whole turns only, every acknowledged one present, in order.
            assert len(items) == record.history_length and len(items) % 2 == 0
            stored = [int(item["content"][0]["text"][1:].split("q")[0]) for item in items[::2]]
            assert stored[: len(turns)] == turns
            assert [item["role"] for item in items] == ["user", "assistant"] * (len(items) // 2)
            # The lease of the killed writer is taken over.
            await store.acquire(cid)
    finally:
        await store.close()
