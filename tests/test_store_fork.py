"""save_records and fork_history (both stores), the is_user migration, and their manager use."""

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_kinds import STORE_KINDS, new_store
from test_manager import Recorder
from test_store_sqlite import add_turn, make_record, turn

from convmgr.core.manager import ConversationManager
from convmgr.model import (
    ConversationExists,
    ConversationNotFound,
    ConversationSettings,
    Item,
    TurnSettings,
    is_user_message,
    message_item,
    preview_of,
    truncate_after_dropping_last_messages,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore
from convmgr.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore

# --- save_records ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_save_records_saves_summaries_not_history(store: ConversationStore) -> None:
    records = []
    for n in range(3):
        record = make_record(f"c{n}", turn(n))
        await store.create(record, turn(n))
        records.append(record)
    first, second, third = records
    first.last_seq = 41
    first.settings = replace(first.settings, model="other-model", metadata={"k": "é"})
    second.last_seq = 7
    second.updated_at = "2999-01-01T00:00:00.000000Z"
    second.history_length = 999  # not the store's business: rows are the truth
    ghost = make_record("ghost")
    await store.save_records([first, ghost, second])
    stored_first = await store.get("c0")
    assert stored_first is not None
    assert (stored_first.last_seq, stored_first.model, stored_first.settings.metadata) == (
        41,
        "other-model",
        {"k": "é"},
    )
    stored_second = await store.get("c1")
    assert stored_second is not None
    assert stored_second.last_seq == 7 and stored_second.history_length == 2
    assert await store.get("c2") == third
    assert await store.get("ghost") is None
    assert await store.read_items("c1") == turn(1)
    # The listing order follows the saved updated_at.
    page, _ = await store.list(None, 10)
    assert page[0].conversation_id == "c1"
    await store.save_records([])
    # A later turn appends after the real rows.
    await add_turn(store, second, turn(9))
    assert await store.read_items("c1") == turn(1) + turn(9)


@pytest.mark.anyio
async def test_save_records_of_many_is_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        records = [make_record(f"c{n:05}") for n in range(2000)]
        for record in records:
            await store.create(record, [])
        for n, record in enumerate(records):
            record.last_seq = n + 1
        before = sqlite3.connect(tmp_path / "s.sqlite3")
        changes = before.execute("PRAGMA data_version").fetchone()[0]
        await store.save_records(records)
        # data_version moves once per commit by another connection.
        assert before.execute("PRAGMA data_version").fetchone()[0] == changes + 1
        before.close()
        stored = await store.get("c01999")
        assert stored is not None and stored.last_seq == 2000
    finally:
        await store.close()


# --- fork_history -----------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


def _message(role: str) -> Any:
    return st.builds(message_item, st.just(role), TEXT)


ITEM = st.one_of(
    _message("user"),
    _message("assistant"),
    _message("system"),
    # Multi-part user message: its preview joins the parts.
    st.builds(
        lambda parts: {
            "type": "message",
            "role": "user",
            "content": [{"type": "text", "text": p} for p in parts],
        },
        st.lists(TEXT, min_size=1, max_size=3),
    ),
    # Items that merely mention a user message must not count as one.
    st.builds(
        lambda t: {"type": "reasoning", "text": '{"type":"message","role":"user"}' + t}, TEXT
    ),
    st.builds(
        lambda t: {"type": "functionCall", "callId": "c", "name": "user", "arguments": t}, TEXT
    ),
    st.builds(lambda t: {"type": "functionCallOutput", "callId": "c", "output": t}, TEXT),
)


async def check_fork(store: ConversationStore, items: list[Item], drop: int) -> None:
    """fork_history gives what the pure fork rule gives, and the preview of the kept items."""
    source = make_record("src", items, last_seq=9)
    await store.create(source, items)
    expected = truncate_after_dropping_last_messages(items, drop)
    fork = make_record("fork", forked_from="src", instructions="kept")
    length = await store.fork_history("src", fork, drop)
    assert length == len(expected) == fork.history_length
    assert fork.preview == preview_of(expected)
    assert await store.read_items("fork") == expected
    stored = await store.get("fork")
    assert stored == fork
    assert stored.forked_from == "src" and stored.last_seq == 0
    # The source is untouched; a fork of the fork follows the same rule.
    assert await store.read_items("src") == items
    again = make_record("fork2")
    await store.fork_history("fork", again, 1)
    assert await store.read_items("fork2") == truncate_after_dropping_last_messages(expected, 1)
    # The copy keeps counting user messages right when turns are appended to it.
    await add_turn(store, fork, turn(1))
    assert await store.read_items("fork") == expected + turn(1)
    third = make_record("fork3")
    await store.fork_history("fork", third, 1)
    assert await store.read_items("fork3") == expected


@pytest.mark.parametrize("kind", STORE_KINDS)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=st.lists(ITEM, max_size=25), drop=st.integers(0, 12))
def test_fork_history_matches_the_pure_rule(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, items: list[Item], drop: int
) -> None:
    server = request.getfixturevalue("pg_server") if kind == "postgresql" else None

    async def run() -> None:
        store = new_store(kind, tmp_path, None if server is None else server.new_database())
        await store.open()
        try:
            await check_fork(store, items, drop)
        finally:
            await store.close()

    anyio.run(run)


@pytest.mark.anyio
async def test_fork_history_errors(store: ConversationStore) -> None:
    items = turn(0) + turn(1)
    await store.create(make_record("src", items), items)
    await store.create(make_record("taken"), [])
    with pytest.raises(ConversationExists):
        await store.fork_history("src", make_record("taken"), 0)
    with pytest.raises(ConversationExists):
        await store.fork_history("src", make_record("src"), 1)
    assert await store.read_items("taken") == []
    assert await store.read_items("src") == items
    with pytest.raises(ConversationNotFound):
        await store.fork_history("missing", make_record("new"), 0)
    assert await store.get("new") is None


@pytest.mark.anyio
async def test_fork_history_long_preview_is_cut(store: ConversationStore) -> None:
    items = [message_item("system", "s"), message_item("user", "x" * 500), *turn(1)]
    await store.create(make_record("src", items), items)
    fork = make_record("f")
    assert await store.fork_history("src", fork, 1) == 2
    assert fork.preview == "x" * 200
    empty = make_record("e")
    assert await store.fork_history("src", empty, 5) == 0
    assert empty.preview is None
    assert await store.read_items("e") == []


# --- the is_user migration --------------------------------------------------------------------


@pytest.mark.anyio
async def test_migration_marks_existing_user_messages(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    items = [
        message_item("system", "s"),
        *turn(0),
        {"type": "reasoning", "text": '"role":"user"'},
        *turn(1),
        {"type": "message", "role": "user", "content": []},
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO conversations (conversation_id, provider, model, created_at, updated_at, "
        "history_length, last_seq, preview) VALUES ('old', 'echo', 'echo', 't', 't', ?, 3, "
        "'question 0')",
        (len(items),),
    )
    conn.executemany(
        "INSERT INTO items (conversation_id, idx, json) VALUES ('old', ?, ?)",
        [(n, json.dumps(item)) for n, item in enumerate(items)],
    )
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        marks = sqlite3.connect(path).execute(
            "SELECT is_user FROM items WHERE conversation_id = 'old' ORDER BY idx"
        )
        assert [bool(row[0]) for row in marks] == [is_user_message(item) for item in items]
        for drop in range(5):
            fork = make_record(f"fork{drop}")
            await store.fork_history("old", fork, drop)
            expected = truncate_after_dropping_last_messages(items, drop)
            assert await store.read_items(f"fork{drop}") == expected
        assert await store.integrity_check() == ["ok"]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_fork_finds_the_cut_on_the_user_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "s.sqlite3")
    plan = " ".join(
        row[3]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT idx FROM items WHERE conversation_id = ? AND is_user = 1 "
            "ORDER BY idx DESC LIMIT 1 OFFSET ?",
            ("x", 3),
        )
    )
    conn.close()
    assert "items_user" in plan, plan


# --- the manager's use of them ----------------------------------------------------------------


class CountingStore(MemoryStore):
    """A memory store that counts calls and refuses whole-history reads."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[list[str]] = []
        self.whole_reads = 0

    async def save_records(self, records: Any) -> None:
        self.saves.append([r.conversation_id for r in records])
        await super().save_records(records)

    async def read_items(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        if limit is None:
            self.whole_reads += 1
        return await super().read_items(conversation_id, offset, limit)


@pytest.fixture
async def managed() -> AsyncIterator[tuple[ConversationManager, Recorder, CountingStore]]:
    recorder = Recorder()
    store = CountingStore()
    async with ConversationManager(store, ProviderRegistry.echo_only(), recorder) as manager:
        yield manager, recorder, store
        await manager.close_all()


async def _turn(manager: ConversationManager, rec: Recorder, cid: str, text: str, nth: int) -> None:
    manager.send_user_turn(cid, [text], TurnSettings())
    await rec.wait_for(cid, "turnComplete", nth)


@pytest.mark.anyio
async def test_close_all_saves_last_seq_in_one_call(
    managed: tuple[ConversationManager, Recorder, CountingStore],
) -> None:
    manager, rec, store = managed
    for n in range(5):
        await manager.new_conversation(f"c{n}", ConversationSettings())
        await _turn(manager, rec, f"c{n}", "hello", 1)
    await manager.new_conversation("eph", ConversationSettings(ephemeral=True))
    await manager.close_all()
    assert store.saves == [[f"c{n}" for n in range(5)]]
    for n in range(5):
        stored = await store.get(f"c{n}")
        last = [e["seq"] for e in rec.events if e["conversationId"] == f"c{n}"][-1]
        assert rec.types(f"c{n}")[-1] == "shutdownComplete"
        assert stored is not None and stored.last_seq == last


@pytest.mark.anyio
async def test_remove_saves_last_seq_and_resume_continues(
    managed: tuple[ConversationManager, Recorder, CountingStore],
) -> None:
    manager, rec, store = managed
    await manager.new_conversation("c", ConversationSettings())
    await _turn(manager, rec, "c", "hello", 1)
    assert await manager.remove_conversation("c", delete_history=False)
    assert store.saves == [["c"]]
    seen = max(e["seq"] for e in rec.events)
    assert (await manager.get_conversation("c")).record.last_seq == seen
    await manager.resume_conversation("c", ConversationSettings())
    await _turn(manager, rec, "c", "again", 2)
    seqs = [e["seq"] for e in rec.events]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.anyio
async def test_fork_of_stored_conversation_does_not_read_its_history(
    managed: tuple[ConversationManager, Recorder, CountingStore],
) -> None:
    manager, rec, store = managed
    await manager.new_conversation("src", ConversationSettings(instructions="be brief"))
    for n, text in enumerate(("one", "two", "three")):
        await _turn(manager, rec, "src", text, n + 1)
    await manager.remove_conversation("src", delete_history=False)
    fork = await manager.fork_conversation("src", None, 2, ConversationSettings(), "f")
    assert store.whole_reads == 0
    assert (fork.history_length, fork.preview, fork.forked_from) == (2, "one", "src")
    assert fork.settings.instructions == "be brief"
    assert await manager.read_history("f") == [
        message_item("user", "one"),
        message_item("assistant", "one"),
    ]
    store.whole_reads = 0
    # Loaded source, everything kept.
    full = await manager.fork_conversation("f", None, 0, ConversationSettings(), "g")
    assert full.history_length == 2 and store.whole_reads == 0
    # An ephemeral fork of a stored conversation keeps its history in memory.
    eph = await manager.fork_conversation("src", None, 1, ConversationSettings(ephemeral=True), "e")
    assert eph.ephemeral and eph.history_length == 4 and eph.preview == "one"
    assert await store.get("e") is None
    # Target taken.
    with pytest.raises(ConversationExists):
        await manager.fork_conversation("src", None, 0, ConversationSettings(), "src")
    assert manager.loaded("src") is None
