"""The store's commit process: turns committed by a child, and what happens when it fails."""

import json
import os
import select
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from client import TERMINAL, text_input

from convmgr.model import ConversationRecord, ConversationSettings, Item, message_item, utc_now
from convmgr.store.commit_channel import CommitError, CommitProcess, CommitProcessUnavailable
from convmgr.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and uses pidfd_open"
)


def make_record(cid: str) -> ConversationRecord:
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo-1"),
        created_at=now,
        updated_at=now,
    )


def stored_json(path: Path, cid: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [
            row[0]
            for row in conn.execute(
                "SELECT json FROM items WHERE conversation_id = ? ORDER BY idx", (cid,)
            )
        ]
    finally:
        conn.close()


def children(pid: int) -> list[int]:
    """The live child processes of pid (Linux)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process pid exits within timeout (any process, not only our children)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


async def commit(store: SqliteStore, record: ConversationRecord, items: list[Item]) -> None:
    record.history_length += len(items)
    record.updated_at = utc_now()
    await store.commit_turn(record, items)


async def test_concurrent_turns_go_through_the_child(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, commit_process=True)
    await store.open()
    try:
        committer = store._committer
        assert committer is not None and committer.usable
        records = [make_record(f"c{n}") for n in range(40)]
        for record in records:
            await store.create(record, [])

        async def turns(record: ConversationRecord) -> None:
            for turn in range(5):
                text = f"{record.conversation_id} turn {turn} é 中文 \x00 \u2028"
                await commit(
                    store, record, [message_item("user", text), message_item("assistant", text)]
                )

        async with anyio.create_task_group() as tg:
            for record in records:
                tg.start_soon(turns, record)
        assert store._committer is committer and committer.usable  # no fallback happened
        for record in records:
            items = await store.read_items(record.conversation_id)
            assert len(items) == 10
            assert [item["content"][0]["text"] for item in items[::2]] == [
                f"{record.conversation_id} turn {turn} é 中文 \x00 \u2028" for turn in range(5)
            ]
            stored = await store.get(record.conversation_id)
            assert stored is not None and stored.history_length == 10
    finally:
        await store.close()
    # Encoded exactly as the store's thread encodes (compact, non-ASCII kept).
    first = stored_json(path, "c0")[0]
    assert first == json.dumps(
        message_item("user", "c0 turn 0 é 中文 \x00 \u2028"),
        ensure_ascii=False,
        separators=(",", ":"),
    )


async def test_a_turn_that_does_not_encode_fails_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", commit_process=True)
    await store.open()
    try:
        good, bad = make_record("good"), make_record("bad")
        await store.create(good, [])
        await store.create(bad, [])
        await commit(store, good, [message_item("user", "warm up")])  # the child is ready

        async def bad_turn() -> None:
            # marshal carries a set, JSON cannot: the child reports it for this turn only.
            with pytest.raises(CommitError, match="not JSON serializable"):
                await commit(store, bad, [{"type": "x", "v": {1, 2}}])

        async with anyio.create_task_group() as tg:
            tg.start_soon(bad_turn)
            tg.start_soon(commit, store, good, [message_item("user", "same batch")])
        # Something marshal cannot carry goes to the thread, which fails it the usual way.
        with pytest.raises(TypeError, match="not JSON serializable"):
            await commit(store, bad, [{"type": "x", "v": object()}])
        assert [i["content"][0]["text"] for i in await store.read_items("good")] == [
            "warm up",
            "same batch",
        ]
        assert await store.read_items("bad") == []
        committer = store._committer
        assert committer is not None and committer.usable
    finally:
        await store.close()


async def test_child_killed_mid_commit_fails_that_turn_then_the_thread_takes_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, commit_process=True)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        record = make_record("c")
        await store.create(record, [])
        await commit(store, record, [message_item("user", "one")])
        committer = store._committer
        assert committer is not None
        child = committer._proc.pid
        # Hold the write lock: the child's next commit waits on it (busy_timeout).
        blocker.execute("BEGIN IMMEDIATE")
        failed: list[BaseException] = []

        async def stuck_turn() -> None:
            try:
                await commit(store, record, [message_item("user", "lost")])
            except CommitError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck_turn)
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()  # the turns of a loop pass are sent after it
            assert committer._in_flight  # sent, not answered
            os.kill(child, signal.SIGKILL)
        assert len(failed) == 1 and "exited before answering" in str(failed[0])
        assert not committer.usable
        blocker.execute("ROLLBACK")
        # The next turn is committed on the store's thread.
        record.history_length -= 1  # the lost turn was never stored
        await commit(store, record, [message_item("user", "two")])
        assert [i["content"][0]["text"] for i in await store.read_items("c")] == ["one", "two"]
    finally:
        blocker.close()
        await store.close()


async def test_child_that_cannot_start_leaves_turns_to_the_thread(tmp_path: Path) -> None:
    # The child cannot open a file in a missing directory: it exits before "ready".
    committer = CommitProcess.start(tmp_path / "missing" / "s.sqlite3")
    assert committer is not None
    with pytest.raises(CommitProcessUnavailable):
        await committer.commit(("c", (), [message_item("user", "x")]))
    assert not committer.usable
    await committer.aclose()


async def test_close_waits_for_turns_already_sent(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, commit_process=True)
    await store.open()
    records = [make_record(f"c{n}") for n in range(20)]
    for record in records:
        await store.create(record, [])
    await commit(store, records[0], [message_item("user", "warm up")])  # the child is ready
    committer = store._committer
    assert committer is not None
    async with anyio.create_task_group() as tg:
        for record in records:
            tg.start_soon(commit, store, record, [message_item("user", record.conversation_id)])
        await anyio.wait_all_tasks_blocked()
        await anyio.lowlevel.checkpoint()
        assert committer._in_flight
        await store.close()  # while the turns are on their way
    assert committer._proc.returncode == 0
    for record in records[1:]:
        assert stored_json(path, record.conversation_id) == [
            json.dumps(message_item("user", record.conversation_id), separators=(",", ":"))
        ]


# --- through the server -------------------------------------------------------------------


@linux_only
def test_the_child_ends_with_the_server(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    for ending in ("eof", "sigterm", "kill-9"):
        client = spawn("--store", path)
        client.result("newConversation", {"conversationId": ending})
        client.result("sendUserTurn", {"conversationId": ending, "input": text_input("hi")})
        events = client.collect_turn(ending)
        assert events[-1]["event"]["type"] in TERMINAL
        (child,) = children(client.pid)
        # Not in the server's process group: a Ctrl-C in a terminal is the server's to handle.
        assert os.getpgid(child) != os.getpgid(client.pid)
        if ending == "eof":
            client.close_stdin()
            client.read_until_eof()
        elif ending == "sigterm":
            client.signal(signal.SIGTERM)
            client.read_until_eof()
        else:
            client.proc.send_signal(signal.SIGKILL)
        client.wait()
        assert wait_gone(child), f"commit process {child} outlived the server ({ending})"
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()
