"""The PostgreSQL store beyond the contract tests: leases across processes, fencing,
a database restart mid-turn, export/import between the backends, the URL's handling.

Every test runs against the session's own server (conftest.pg_server).
"""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from client import server_env, text_input
from pg_server import PgServer
from recorder import Recorder
from test_store_commit_path import make_record
from test_store_server import CONFLICT, end_cleanly, history, kill9, run_turn, user_texts

from convmgr.core.manager import ConversationManager
from convmgr.core.tools import Toolbox
from convmgr.model import (
    ConversationLocked,
    ConversationSettings,
    LeaseLost,
    TurnSettings,
    message_item,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.location import describe, mask_url, store_target
from convmgr.store.postgres import PostgresStore
from convmgr.store.sqlite import SqliteStore
from convmgr.transfer import export_conversation, import_conversation


def db_row(url: str, sql: str, *args: Any) -> Any:
    """One row of a query, on a connection of the test's own."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchone()


def wait_for_db(url: str, sql: str, *args: Any, timeout: float = 30.0) -> None:
    """Poll until the database says `sql` is true (the proof is the database's state)."""
    deadline = time.monotonic() + timeout
    while not db_row(url, sql, *args)[0]:
        assert time.monotonic() < deadline, f"never true: {sql}"
        time.sleep(0.05)


def config_file(tmp_path: Path, url: str, lease_ttl_s: float) -> Path:
    """A configuration whose [store] is the database, with a short lease."""
    path = tmp_path / "config.toml"
    path.write_text(f'[store]\nurl = "{url}"\nlease_ttl_s = {lease_ttl_s}\n')
    return path


# --- leases and fencing, in one process ----------------------------------------------


@pytest.mark.anyio
async def test_lease_is_exclusive_and_fenced_after_forced_expiry(pg_server: PgServer) -> None:
    url = pg_server.new_database()
    first, second = PostgresStore(url), PostgresStore(url)
    await first.open()
    await second.open()
    try:
        rec = make_record("c")
        await first.create(rec, [message_item("user", "hi")], lease=True)
        with pytest.raises(ConversationLocked) as locked:
            await second.acquire("c")
        assert "pid" in str(locked.value.data)
        # The holder stops beating (as if cut off): its lease expires by the database's clock.
        db_row(url, "UPDATE leases SET heartbeat_at = now() - interval '1 hour' RETURNING 1")
        await second.acquire("c")
        # The old holder's commit is refused in its transaction: nothing written.
        rec.history_length += 1
        with pytest.raises(LeaseLost):
            await first.commit_turn(rec, [message_item("assistant", "late")])
        assert [i["content"][0]["text"] for i in await second.read_items("c")] == ["hi"]
        assert not first.holds("c")
        taken = await second.get("c")
        assert taken is not None
        await second.commit_turn(taken, [message_item("assistant", "mine")])
        assert len(await first.read_items("c")) == 2
    finally:
        await first.close()
        await second.close()


@pytest.mark.anyio
async def test_heartbeat_reports_a_lost_lease(pg_server: PgServer) -> None:
    url = pg_server.new_database()
    first, second = PostgresStore(url), PostgresStore(url)
    lost: list[str] = []
    first.on_lease_lost = lost.append
    await first.open()
    await second.open()
    try:
        await first.create(make_record("c"), [], lease=True)
        assert await first.heartbeat() == []
        db_row(url, "UPDATE leases SET heartbeat_at = now() - interval '1 hour' RETURNING 1")
        await second.acquire("c")
        assert await first.heartbeat() == ["c"] and lost == ["c"]
        # Closing the old holder leaves the new holder's lease alone.
        await first.close()
        owner = db_row(url, "SELECT count(*) FROM leases WHERE conversation_id = 'c'")
        assert owner[0] == 1
    finally:
        await first.close()
        await second.close()


# --- two convmgr processes -------------------------------------------------------------


def test_two_processes_lease_and_takeover_after_kill9(
    spawn: Any, tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.new_database()
    config = config_file(tmp_path, url, lease_ttl_s=1.0)
    a = spawn("--config", config)
    a.result("newConversation", {"conversationId": "owned"})
    run_turn(a, "owned", "hello from a")
    b = spawn("--config", config)
    listed = b.result("listConversations", {})
    assert [item["conversationId"] for item in listed["items"]] == ["owned"]
    assert user_texts(history(b, "owned")) == ["hello from a"] * 2
    assert b.error("resumeConversation", {"conversationId": "owned"})["code"] == CONFLICT
    kill9(a)
    # No heartbeat for lease_ttl_s, by the database's clock: then b takes it over.
    wait_for_db(
        url,
        "SELECT bool_and(heartbeat_at < now() - interval '1 second') FROM leases "
        "WHERE conversation_id = 'owned'",
    )
    b.result("resumeConversation", {"conversationId": "owned"})
    run_turn(b, "owned", "b continues")
    assert user_texts(history(b, "owned"))[-1] == "b continues"
    end_cleanly(b)
    assert db_row(url, "SELECT count(*) FROM leases")[0] == 0


def test_database_restart_mid_turn(spawn: Any, tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.new_database()
    a = spawn("--store", url)
    a.result("newConversation", {"conversationId": "c"})
    run_turn(a, "c", "before")
    # A long turn streams for a while; the database restarts under it.
    a.result("sendUserTurn", {"conversationId": "c", "input": text_input("x" * 400_000)})
    pg_server.pg_ctl("restart")
    events = a.collect_turn("c")
    assert events[-1]["event"]["type"] in ("turnComplete", "turnFailed"), events[-1]
    # Nothing half-written: whole turns only, the summary's length is the rows'.
    stored = db_row(url, "SELECT count(*) FROM items WHERE conversation_id = 'c'")[0]
    length = db_row(url, "SELECT history_length FROM conversations")[0]
    assert stored == length and stored in (2, 4)
    # The server keeps serving once the database is back.
    run_turn(a, "c", "after")
    assert user_texts(history(a, "c"))[-1] == "after"
    end_cleanly(a)


# --- export / import between the backends ------------------------------------------------


@pytest.mark.anyio
async def test_export_import_between_backends(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.new_database()
    lite, pg = SqliteStore(tmp_path / "s.sqlite3"), PostgresStore(url)
    await lite.open()
    await pg.open()
    try:
        items = [message_item("user", "q \x00 é"), message_item("assistant", "a")]
        rec = make_record("laptop")
        rec.history_length = 2
        await lite.create(rec, items)
        lines = [line async for line in export_conversation(lite, "laptop")]
        import json

        texts = [json.dumps(line) for line in lines]
        assert await import_conversation(pg, texts) == "laptop"
        assert await pg.read_items("laptop") == items
        back = [json.dumps(line) async for line in export_conversation(pg, "laptop")]
        assert await import_conversation(lite, back, "round-trip") == "round-trip"
        assert await lite.read_items("round-trip") == items
    finally:
        await lite.close()
        await pg.close()


def test_export_import_commands_move_a_conversation(
    spawn: Any, tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.new_database()
    lite = tmp_path / "laptop.sqlite3"
    a = spawn("--store", lite)
    a.result("newConversation", {"conversationId": "moved"})
    run_turn(a, "moved", "take me along")
    end_cleanly(a)
    env = server_env(tmp_path)
    cmd = [sys.executable, "-m", "convmgr"]
    exported = subprocess.run(
        [*cmd, "export", "--store", str(lite), "moved"], env=env, capture_output=True, check=True
    )
    imported = subprocess.run(
        [*cmd, "import", "-"],
        input=exported.stdout,
        env={**env, "CONVMGR_STORE": url},
        capture_output=True,
        check=True,
    )
    assert imported.stdout.decode().strip() == "moved"
    b = spawn("--store", url)
    assert user_texts(history(b, "moved")) == ["take me along"] * 2


# --- the URL ---------------------------------------------------------------------------------


def test_store_precedence() -> None:
    pg = "postgresql://u@h/db"
    env = {"CONVMGR_STORE": "postgresql://env@h/db", "CONVMGR_HOME": "/home/x"}
    assert store_target(pg, "postgresql://cfg@h/db", env) == pg
    assert store_target(None, "postgresql://cfg@h/db", env) == env["CONVMGR_STORE"]
    assert store_target(None, "postgresql://cfg@h/db", {}) == "postgresql://cfg@h/db"
    assert store_target("/tmp/a.sqlite3", None, env) == Path("/tmp/a.sqlite3")
    assert isinstance(store_target(None, None, {}), Path)


def test_password_is_masked() -> None:
    assert mask_url("postgresql://u:s3cret@h:5/db") == "postgresql://u:***@h:5/db"
    assert "s3cret" not in mask_url("postgresql://u@h/db?password=s3cret&sslmode=require")
    assert describe("postgresql://u@h/db") == "postgresql://u@h/db"


def test_connection_refused_at_start_exits_2_naming_the_host(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "convmgr",
            "serve",
            "--store",
            f"postgresql://u:pw1@127.0.0.1:{port}/d",
        ],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], done.stderr
    assert "pw1" not in done.stderr


def test_password_never_logged(spawn: Any, tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.new_database().replace("convmgr@", "convmgr:Sekr1t@")
    log = tmp_path / "log.txt"
    a = spawn("--store", url, "--log-level", "debug", "--log-file", log)
    a.result("newConversation", {"conversationId": "c"})
    run_turn(a, "c", "hi")
    end_cleanly(a)
    text = log.read_text()
    assert "convmgr:***@" in text and "Sekr1t" not in text
    doctor = subprocess.run(
        [sys.executable, "-m", "convmgr", "doctor", "--store", url],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert doctor.returncode == 0, doctor.stdout
    assert "convmgr:***@" in doctor.stdout and "Sekr1t" not in doctor.stdout


class HeldClient:
    """A client whose tool calls never end: the turn stays in its tool round."""

    def __init__(self) -> None:
        self.called = anyio.Event()

    def can_approve(self) -> bool:
        return False

    def needs_approval(self, name: str) -> bool:
        return False

    async def call_tool(self, request: Any) -> Any:
        self.called.set()
        await anyio.Event().wait()

    async def request_approval(self, request: Any) -> Any:
        return "deny"


@pytest.mark.anyio
async def test_a_lost_lease_aborts_the_turn_and_unloads_the_conversation(
    pg_server: PgServer,
) -> None:
    url = pg_server.new_database()
    first, second = PostgresStore(url), PostgresStore(url)
    await first.open()
    await second.open()
    recorder, client = Recorder(), HeldClient()
    try:
        async with ConversationManager(
            first, ProviderRegistry.echo_only(), recorder, toolbox=Toolbox(client, None)
        ) as manager:
            tool = {"name": "slow", "description": "", "inputSchema": {"type": "object"}}
            await manager.new_conversation("c", ConversationSettings(tools=[tool]))
            manager.send_user_turn("c", ["/call slow {}"], TurnSettings())
            await client.called.wait()
            # Another process takes the conversation over once the lease expired.
            db_row(url, "UPDATE leases SET heartbeat_at = now() - interval '1 hour' RETURNING 1")
            await second.acquire("c")
            assert await first.heartbeat() == ["c"]
            await recorder.wait_for("c", "shutdownComplete")
            assert recorder.types("c")[-2:] == ["turnAborted", "shutdownComplete"]
            assert recorder.of("c")[-2]["reason"] == "leaseLost"
            assert manager.loaded("c") is None
            await manager.close_all()
        # Nothing of the turn was written, and the new holder's lease is untouched.
        assert await second.read_items("c") == []
        assert second.holds("c")
    finally:
        await first.close()
        await second.close()


def test_two_processes_fencing_after_a_forced_lease_expiry(
    spawn: Any, tmp_path: Path, pg_server: PgServer
) -> None:
    """The holder's lease expires (forced); another process takes over; the holder stops."""
    url = pg_server.new_database()
    config = config_file(tmp_path, url, lease_ttl_s=30.0)
    a = spawn("--config", config)
    tool = {"name": "slow", "description": "", "inputSchema": {"type": "object"}}
    a.result("newConversation", {"conversationId": "c", "tools": [tool]})
    a.result("sendUserTurn", {"conversationId": "c", "input": text_input("/call slow {}")})
    held = a.server_request()  # the turn now waits on a's client: never answered
    assert held["method"] == "tool/call"
    # As if a were cut off for longer than lease_ttl_s: b may take the conversation.
    db_row(url, "UPDATE leases SET heartbeat_at = now() - interval '1 hour' RETURNING 1")
    b = spawn("--config", config)
    b.result("resumeConversation", {"conversationId": "c"})
    run_turn(b, "c", "b writes")
    # a learns it at its next heartbeat (lease_ttl_s / 3) or commit, whichever comes first.
    aborted = a.wait_event("c", "turnAborted", timeout=60)
    assert aborted["event"]["reason"] == "leaseLost"
    a.wait_event("c", "shutdownComplete")
    error = a.error("sendUserTurn", {"conversationId": "c", "input": text_input("again")})
    assert error["code"] == CONFLICT
    # Nothing of a's turn was written: only b's.
    assert user_texts(history(b, "c")) == ["b writes", "b writes"]
    end_cleanly(b)
    end_cleanly(a)
