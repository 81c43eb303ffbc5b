"""Regression tests of store defects: int64 history ranges, atomic creation under storage
failures, dangling-link and corrupt store files, and cancelled history reads.

Faults are injected for real where that can be made deterministic: a file size limit
(RLIMIT_FSIZE, set on a running process with prlimit), SQLite's max_page_count, a lock
held by another connection, garbage written into a page of a real store file. A
cancelled read is held inside SQLite by a progress handler that the test controls, so
"interrupted" is proven by what SQLite did next, never by the clock.
"""

import resource
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from client import text_input

from convmgr.core.manager import ConversationManager
from convmgr.model import (
    ConversationRecord,
    ConversationSettings,
    Item,
    StorageFailed,
    message_item,
    preview_of,
    utc_now,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.store.sqlite import SqliteStore, StoreOpenError

INT64_MAX = 2**63 - 1
INTERNAL_ERROR = -32603
NOT_FOUND = -32001
STORAGE_FAILED = -32006

needs_prlimit = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(resource, "prlimit"),
    reason="needs Linux prlimit to set RLIMIT_FSIZE on another process",
)


def make_record(cid: str, items: list[Item] | None = None) -> ConversationRecord:
    """A record as the manager would build it."""
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
        history_length=len(items or []),
        preview=preview_of(items or []),
    )


def history_of(n: int, text: str = "question") -> list[Item]:
    """n items, alternating user and assistant messages."""
    return [message_item("user" if i % 2 == 0 else "assistant", f"{text} {i}") for i in range(n)]


class Sink:
    """An event sink that drops events (these tests look at the store)."""

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: Any) -> None:
        pass

    def congested(self) -> bool:
        return False

    async def wait_ready(self) -> None:
        pass


async def on_thread(store: SqliteStore, func: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run func(connection) on the store's thread, in order with its other jobs."""
    conn = store._conn
    assert conn is not None
    return await store._run(func, conn)


def set_limit(pid: int, soft: int) -> None:
    """Set a process's soft file size limit (its hard limit is left as it is)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def page_size(path: Path) -> int:
    """The page size in a SQLite file's header."""
    with open(path, "rb") as file:
        file.seek(16)
        raw = int.from_bytes(file.read(2), "big")
    return 65536 if raw == 1 else raw


# --- 5: history ranges up to int64 --------------------------------------------------------


@pytest.mark.anyio
async def test_read_items_takes_any_int64_offset_and_limit(store: ConversationStore) -> None:
    items = history_of(5)
    await store.create(make_record("c", items), items)
    assert await store.read_items("c", 1, INT64_MAX) == items[1:]
    assert await store.read_items("c", 0, INT64_MAX) == items
    assert await store.read_items("c", 4, INT64_MAX - 3) == items[4:]
    assert await store.read_items("c", INT64_MAX, INT64_MAX) == []
    assert await store.read_items("c", INT64_MAX, 1) == []
    assert await store.read_items("c", 2, 2) == items[2:4]
    assert await store.read_items("c", 3, 0) == []
    assert await store.read_items("c", 3) == items[3:]


def test_get_conversation_with_int64_history_limit(spawn: Any, tmp_path: Path) -> None:
    client = spawn("--store", tmp_path / "s.sqlite3")
    client.result("newConversation", {"conversationId": "c"})
    for text in ("one", "two"):
        client.result("sendUserTurn", {"conversationId": "c", "input": text_input(text)})
        assert client.collect_turn("c")[-1]["event"]["type"] == "turnComplete"
    # Stored, not loaded: the history comes from the store.
    client.result("removeConversation", {"conversationId": "c"})
    result = client.result(
        "getConversation",
        {
            "conversationId": "c",
            "includeHistory": True,
            "historyOffset": 1,
            "historyLimit": INT64_MAX,
        },
    )
    texts = [item["content"][0]["text"] for item in result["history"]]
    assert texts == ["one", "two", "two"]


# --- 6: creation is atomic, storage failures are -32006 with a reason ----------------------


@pytest.fixture
async def sqlite_manager(tmp_path: Path) -> AsyncIterator[tuple[ConversationManager, SqliteStore]]:
    store = SqliteStore(tmp_path / "m.sqlite3")
    await store.open()
    try:
        async with ConversationManager(store, ProviderRegistry.echo_only(), Sink()) as manager:
            yield manager, store
            await manager.close_all()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_disk_full_while_taking_the_lease_leaves_nothing(
    sqlite_manager: tuple[ConversationManager, SqliteStore],
) -> None:
    """The conversation row fits, the lease does not: a retry must not see "exists"."""
    manager, store = sqlite_manager

    def fill_up_at_lease(conn: sqlite3.Connection) -> None:
        # The lease's insert grows the file by many pages, and the file may not grow:
        # SQLITE_FULL, exactly as a full disk answers, after the conversation row fit.
        conn.execute(
            "CREATE TEMP TRIGGER grow_at_lease BEFORE INSERT ON main.leases BEGIN "
            "INSERT INTO items (conversation_id, idx, json) "
            "VALUES ('padding', 0, zeroblob(200000)); END"
        )
        pages = conn.execute("PRAGMA main.page_count").fetchone()[0]
        conn.execute(f"PRAGMA main.max_page_count = {pages}")

    def disk_freed(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TRIGGER temp.grow_at_lease")
        conn.execute("PRAGMA main.max_page_count = 1073741823")

    await on_thread(store, fill_up_at_lease)
    with pytest.raises(StorageFailed) as failed:
        await manager.new_conversation("c", ConversationSettings())
    assert failed.value.reason == "disk_full"
    assert failed.value.data == {"reason": "disk_full"}
    assert await store.get("c") is None
    assert manager.loaded("c") is None
    leases = await on_thread(store, lambda c: c.execute("SELECT count(*) FROM leases").fetchone())
    assert leases == (0,)

    await on_thread(store, disk_freed)
    record = await manager.new_conversation("c", ConversationSettings())
    assert record.conversation_id == "c"
    assert manager.loaded("c") is not None
    assert await store.get("c") is not None


@pytest.mark.anyio
async def test_a_fork_that_fails_at_the_lease_leaves_nothing(
    sqlite_manager: tuple[ConversationManager, SqliteStore],
) -> None:
    manager, store = sqlite_manager
    source = history_of(4)
    await store.create(make_record("src", source), source)
    await on_thread(
        store,
        lambda conn: conn.execute(
            "CREATE TEMP TRIGGER fail_at_lease BEFORE INSERT ON main.leases "
            "WHEN NEW.conversation_id = 'fork' BEGIN SELECT RAISE(ABORT, 'injected'); END"
        ),
    )
    with pytest.raises(sqlite3.IntegrityError):
        await manager.fork_conversation("src", None, 1, ConversationSettings(), "fork")
    assert await store.get("fork") is None
    assert await store.read_items("fork") == []
    await on_thread(store, lambda conn: conn.execute("DROP TRIGGER temp.fail_at_lease"))
    record = await manager.fork_conversation("src", None, 1, ConversationSettings(), "fork")
    assert record.history_length == 2


@pytest.mark.anyio
async def test_a_lock_held_past_the_timeout_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "locked.sqlite3")
    await store.open()
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        await on_thread(store, lambda conn: conn.execute("PRAGMA busy_timeout = 1"))
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageFailed) as failed:
            await store.create(make_record("c"), [])
        assert failed.value.reason == "unavailable"
        other.execute("ROLLBACK")
        await store.create(make_record("c"), [])
    finally:
        other.close()
        await store.close()


@needs_prlimit
def test_new_conversation_at_the_file_size_limit(spawn: Any, tmp_path: Path) -> None:
    """Writes fail with EFBIG: -32006, never -32603; a retry once lifted never sees -32003.

    The limit is put at the end of the WAL plus k frames, for several k: some
    creations fail before the conversation row is written, some (before the fix)
    after it and before the lease; those that fit succeed.
    """
    path = tmp_path / "s.sqlite3"
    client = spawn("--store", path)
    client.result("initialize", {})  # the store is open once the first answer is in
    wal = Path(f"{path}-wal")
    frame = page_size(path) + 24
    failures = 0
    try:
        for k in range(8):
            cid = f"c{k}"
            set_limit(client.pid, wal.stat().st_size + k * frame)
            response = client.request("newConversation", {"conversationId": cid})
            if "error" in response:
                failures += 1
                error = response["error"]
                assert error["code"] == STORAGE_FAILED, error
                # EFBIG is SQLite's "disk I/O error"; a partial write is "disk full".
                assert error["data"]["reason"] in ("io_error", "disk_full"), error
                # Nothing was left behind, neither stored nor loaded.
                assert client.error("resumeConversation", {"conversationId": cid})["code"] == (
                    NOT_FOUND
                )
                set_limit(client.pid, resource.RLIM_INFINITY)
                retried = client.result("newConversation", {"conversationId": cid})
                assert retried["conversationId"] == cid
            set_limit(client.pid, resource.RLIM_INFINITY)
    finally:
        set_limit(client.pid, resource.RLIM_INFINITY)
    assert failures >= 1
    client.result("sendUserTurn", {"conversationId": "c0", "input": text_input("still fine")})
    assert client.collect_turn("c0")[-1]["event"]["type"] == "turnComplete"
    listed = client.result("listConversations", {"limit": 20})
    assert sorted(item["conversationId"] for item in listed["items"]) == [f"c{k}" for k in range(8)]


@needs_prlimit
@pytest.mark.anyio
async def test_a_turn_commit_at_the_file_size_limit_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The WAL may not grow: the COMMIT fails, is read back as not landed, and says why."""
    store = SqliteStore(tmp_path / "limit.sqlite3")
    await store.open()
    try:
        record = make_record("c")
        await store.create(record, [])
        # This very process: Python ignores SIGXFSZ, so the write fails with EFBIG.
        set_limit(0, Path(f"{store.path}-wal").stat().st_size)
        try:
            record.history_length += 2
            with pytest.raises(StorageFailed) as failed:
                await store.commit_turn(record, history_of(2, "lost"))
        finally:
            set_limit(0, resource.RLIM_INFINITY)
        assert failed.value.reason in ("io_error", "disk_full")
        stored = await store.get("c")
        assert stored is not None and stored.history_length == 0
        assert await store.read_items("c") == []
        await store.commit_turn(record, history_of(2, "kept"))
        assert await store.read_items("c") == history_of(2, "kept")
    finally:
        await store.close()


# --- 12: dangling links and corrupt files ---------------------------------------------------


def test_dangling_symlink_store_exits_2_and_creates_nothing(spawn: Any, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "target.sqlite3"
    target.parent.mkdir()
    link = tmp_path / "s.sqlite3"
    link.symlink_to(target)
    client = spawn("--store", link)
    client.close_stdin()
    assert client.read_until_eof() == []
    assert client.wait() == 2
    err = client.stderr()
    assert err.startswith("convmgr: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "symbolic link" in err
    assert list(target.parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == ["s.sqlite3"]
    assert link.is_symlink()


@pytest.mark.anyio
async def test_dangling_symlink_store_does_not_open(tmp_path: Path) -> None:
    link = tmp_path / "s.sqlite3"
    link.symlink_to(tmp_path / "missing.sqlite3")
    with pytest.raises(StoreOpenError, match="symbolic link"):
        await SqliteStore(link).open()
    assert not (tmp_path / "missing.sqlite3").exists()
    # A link to a real store is fine.
    real = tmp_path / "real.sqlite3"
    await SqliteStore(real).open()
    other = tmp_path / "other-link.sqlite3"
    other.symlink_to(real)
    store = SqliteStore(other)
    await store.open()
    await store.create(make_record("c"), [])
    await store.close()


async def build_store(path: Path, conversations: int, items: int) -> None:
    """A real store with some conversations, closed (its WAL checkpointed away)."""
    store = SqliteStore(path)
    await store.open()
    for n in range(conversations):
        history = history_of(items, f"conversation {n} item with some text to fill pages")
        await store.create(make_record(f"conv-{n}", history), history)
    await store.close()


def corrupt_page_holding(path: Path, text: str) -> int:
    """Overwrite with garbage the page (not the first) that holds text; its number."""
    assert not Path(f"{path}-wal").exists()  # everything is in the file itself
    size = page_size(path)
    data = path.read_bytes()
    at = data.find(text.encode())
    assert at >= size, "the text is not in the file, or on the header page"
    page = at // size
    with open(path, "r+b") as file:
        # The header page stays intact: the file still opens as a convmgr store.
        file.seek(page * size)
        file.write(b"\xffgarbage" * (size // 8))
    return page + 1


def test_corrupt_store_answers_corrupt_never_internal_error(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    anyio.run(build_store, path, 3, 400)
    # A page of conv-1's items, in the middle of the file.
    assert corrupt_page_holding(path, "conversation 1 item with some text to fill pages 200") > 2

    client = spawn("--store", path)
    assert client.result("initialize", {})["capabilities"]["persistentStore"] is True
    requests: list[tuple[str, dict[str, Any]]] = [
        ("getConversation", {"conversationId": f"conv-{n}", "includeHistory": True})
        for n in range(3)
    ]
    requests += [
        ("listConversations", {"limit": 10}),
        ("resumeConversation", {"conversationId": "conv-1"}),
        ("newConversation", {"conversationId": "new"}),
        ("getConversation", {"conversationId": "conv-0"}),
    ]
    answers = []
    for method, params in requests:
        response = client.request(method, params)
        error = response.get("error", {"code": "result"})
        answers.append((method, error["code"], error.get("data")))
    expected = [(method, STORAGE_FAILED, {"reason": "corrupt"}) for method, _ in requests]
    assert answers == expected, answers
    client.close_stdin()
    assert client.read_until_eof() == []
    assert client.wait() == 0
    assert "Traceback" not in client.stderr()


@pytest.mark.anyio
async def test_store_with_corrupt_pages_refuses_every_operation(tmp_path: Path) -> None:
    """open() only queues the quick_check; the first operation waits behind it."""
    path = tmp_path / "s.sqlite3"
    await build_store(path, 2, 300)
    corrupt_page_holding(path, "conversation 0 item with some text to fill pages 150")
    store = SqliteStore(path)
    await store.open()
    try:
        with pytest.raises(StorageFailed) as failed:
            await store.get("conv-0")
        assert failed.value.reason == "corrupt"
        with pytest.raises(StorageFailed):
            await store.commit_turn(make_record("conv-0"), history_of(1))
        assert await store.integrity_check() != ["ok"]
    finally:
        await store.close()


# --- 13: a cancelled read is interrupted, a cancelled write is not -------------------------


class Gate:
    """A SQLite progress handler that holds the running statement until released."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls_after_release = 0

    def __call__(self) -> int:
        if not self.armed:
            return 0
        if self.release.is_set():
            self.calls_after_release += 1
            return 0
        self.entered.set()
        self.release.wait(30)  # a hang guard only; the test sets it
        return 0

    async def wait_entered(self) -> None:
        """Until a statement is held in the handler."""
        assert await anyio.to_thread.run_sync(self.entered.wait, 20)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Gate]]:
    """A store with two long histories ("big", "other") and a Gate on its connection."""
    store = SqliteStore(tmp_path / "g.sqlite3")
    await store.open()
    for cid in ("big", "other"):
        items = history_of(3000)
        await store.create(make_record(cid, items), items)
    gate = Gate()
    # Installed on the thread, after open's quick_check (which it must not hold).
    await on_thread(store, lambda conn: conn.set_progress_handler(gate, 50))
    try:
        yield store, gate
    finally:
        gate.release.set()
        await store.close()


@pytest.mark.anyio
async def test_cancelled_running_read_is_interrupted(gated: tuple[SqliteStore, Gate]) -> None:
    store, gate = gated
    outcome: list[str] = []

    async def reader(scope: anyio.CancelScope) -> None:
        with scope:
            await store.read_items("big")
            outcome.append("finished")
        if scope.cancelled_caught:
            outcome.append("cancelled")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        try:
            gate.armed = True
            tg.start_soon(reader, scope)
            await gate.wait_entered()  # the read's statement is running, held here
            scope.cancel()
            await anyio.wait_all_tasks_blocked()  # the reader has seen the cancellation
        finally:
            gate.release.set()
    # Once this answers, the thread is done with the read.
    assert await store.get("nobody") is None
    assert outcome == ["cancelled"]
    # The statement stopped at SQLite's next check: it never ran on to the next rows.
    assert gate.calls_after_release == 0
    assert store._thread is not None and store._thread.interrupted == 1
    # The connection is fine afterwards, reads and writes alike.
    assert len(await store.read_items("big", 2990)) == 10
    await store.create(make_record("after"), history_of(2), lease=True)
    assert await store.read_items("after") == history_of(2)


@pytest.mark.anyio
async def test_cancelled_queued_read_is_dropped(gated: tuple[SqliteStore, Gate]) -> None:
    store, gate = gated
    first: list[list[Item]] = []
    cancelled: list[bool] = []
    back = anyio.Event()

    async def read_big() -> None:
        first.append(await store.read_items("big"))

    async def cancelled_read() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()  # already cancelled: the read is queued, then abandoned
            await store.read_items("other")
        cancelled.append(scope.cancelled_caught)
        back.set()

    async with anyio.create_task_group() as tg:
        try:
            gate.armed = True
            tg.start_soon(read_big)
            await gate.wait_entered()  # the thread is held inside the first read
            tg.start_soon(cancelled_read)
            # A hang guard only: before the fix the cancelled caller waited for the thread.
            with anyio.fail_after(20):
                await back.wait()
            # Back while the thread is still held: nothing waited for the queued read.
            assert not gate.release.is_set()
        finally:
            gate.armed = False
            gate.release.set()
    assert cancelled == [True]
    assert first == [history_of(3000)]
    assert await store.get("nobody") is None
    assert store._thread is not None and store._thread.dropped == 1


@pytest.mark.anyio
async def test_cancelled_write_still_commits(gated: tuple[SqliteStore, Gate]) -> None:
    store, gate = gated
    outcome: list[str] = []

    async def writer(scope: anyio.CancelScope) -> None:
        with scope:
            await store.create(make_record("w"), history_of(3))
        outcome.append("back")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        try:
            gate.armed = True
            tg.start_soon(store.read_items, "big")
            await gate.wait_entered()
            tg.start_soon(writer, scope)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            # The cancelled writer waits for its queued write: it is not back yet.
            assert outcome == []
        finally:
            gate.armed = False
            gate.release.set()
    assert outcome == ["back"]
    assert await store.read_items("w") == history_of(3)


class GatedCheckStore(SqliteStore):
    """A store whose quick_check runs under a Gate (installed by the check job itself)."""

    gate: Gate

    def _quick_check_sync(self) -> None:
        conn = self._conn
        assert conn is not None
        conn.set_progress_handler(self.gate, 50)
        self.gate.armed = True
        try:
            super()._quick_check_sync()
        finally:
            self.gate.armed = False


@pytest.mark.anyio
async def test_close_interrupts_a_running_quick_check(tmp_path: Path) -> None:
    """A big store's quick_check must not hold up the exit (SIGTERM answers in < 1 s)."""
    path = tmp_path / "s.sqlite3"
    await build_store(path, 2, 2000)
    store = GatedCheckStore(path)
    store.gate = gate = Gate()
    await store.open()
    closed: list[bool] = []

    async def close() -> None:
        await store.close()
        closed.append(True)

    async with anyio.create_task_group() as tg:
        try:
            await gate.wait_entered()  # the check is running, held in the handler
            tg.start_soon(close)
            await anyio.wait_all_tasks_blocked()  # close() has asked for the interrupt
        finally:
            gate.release.set()
    assert closed == [True]
    assert gate.calls_after_release == 0  # the check stopped at SQLite's next step
    assert store._corrupt is None  # an interrupted check is not a finding
