"""The SQLite store through the real server: restarts, kill -9, two processes, bad input.

Every test drives `python -m convmgr --store FILE` over pipes (tests/client.py)
and looks at the store file itself only to run `PRAGMA integrity_check`.
"""

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from client import TERMINAL, Client, ProtocolViolation, ServerClosed, server_env, text_input

CONFLICT = -32004
INVALID_PARAMS = -32602


def store_path(tmp_path: Path) -> Path:
    """The store file every server of a test shares."""
    return tmp_path / "s.sqlite3"


def start(spawn: Any, tmp_path: Path) -> Client:
    """A server on the test's store."""
    return spawn("--store", store_path(tmp_path))


def user_texts(history: list[dict[str, Any]]) -> list[str]:
    """The text of each message item, in order (one text part each here)."""
    return [item["content"][0]["text"] for item in history]


def run_turn(client: Client, cid: str, text: str) -> list[dict[str, Any]]:
    """Send one turn and read its events up to the terminal one (which must be turnComplete)."""
    client.result("sendUserTurn", {"conversationId": cid, "input": text_input(text)})
    events = client.collect_turn(cid)
    assert events[-1]["event"] == {
        "type": "turnComplete",
        "lastAgentMessage": text,
        "finishReason": "stop",
    }
    return events


def history(client: Client, cid: str) -> list[dict[str, Any]]:
    """The whole history, read in pages of 3 so paging is exercised too."""
    out: list[dict[str, Any]] = []
    while True:
        page = client.result(
            "getConversation",
            {
                "conversationId": cid,
                "includeHistory": True,
                "historyOffset": len(out),
                "historyLimit": 3,
            },
        )["history"]
        out += page
        if len(page) < 3:
            return out


def end_cleanly(client: Client) -> list[Any]:
    """End of input; every message still to come; exit status 0."""
    client.close_stdin()
    rest = client.read_until_eof()
    assert client.wait() == 0, client.stderr()
    return rest


def integrity(path: Path) -> list[str]:
    """PRAGMA integrity_check of the file, from a connection of our own."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def kill9(client: Client) -> None:
    """SIGKILL and reap (the reaped pid is what a later lease check sees gone)."""
    client.proc.send_signal(signal.SIGKILL)
    client.proc.wait(10)


# --- restart ------------------------------------------------------------------------


def test_restart_lists_resumes_and_continues(spawn: Any, tmp_path: Path) -> None:
    a = start(spawn, tmp_path)
    a.result("initialize", {"clientInfo": {"name": "test"}})
    expected: dict[str, list[str]] = {}
    max_seq: dict[str, int] = {}
    for cid in ("first", "second"):
        a.result("newConversation", {"conversationId": cid, "instructions": f"be {cid}"})
        expected[cid] = []
        for n in range(3):
            text = f"{cid} turn {n} with five words"[: 10 + n * 5]
            events = run_turn(a, cid, text)
            max_seq[cid] = events[-1]["seq"]
            expected[cid] += [text, text]
    for msg in end_cleanly(a):
        params = msg["params"]
        assert params["event"]["type"] == "shutdownComplete"
        max_seq[params["conversationId"]] = params["seq"]

    b = start(spawn, tmp_path)
    listed = b.result("listConversations", {"limit": 10})
    assert [item["conversationId"] for item in listed["items"]] == ["second", "first"]
    assert listed["nextCursor"] is None
    for item in listed["items"]:
        assert item["loaded"] is False
        assert item["historyLength"] == 6
        assert item["preview"] == expected[item["conversationId"]][0]
    for cid in ("first", "second"):
        resumed = b.result("resumeConversation", {"conversationId": cid})
        assert resumed["sessionConfigured"]["historyLength"] == 6
        assert resumed["sessionConfigured"]["instructions"] == f"be {cid}"
        hist = history(b, cid)
        assert user_texts(hist) == expected[cid]
        assert [item["role"] for item in hist] == ["user", "assistant"] * 3
        info = b.result("getConversation", {"conversationId": cid})
        assert info["loaded"] is True and info["historyLength"] == 6
        events = run_turn(b, cid, "continued after restart")
        expected[cid] += ["continued after restart"] * 2
        seqs = [event["seq"] for event in events]
        # seq continues strictly above everything the last process sent,
        # shutdownComplete included, and still grows by exactly 1.
        assert seqs[0] > max_seq[cid], (seqs, max_seq[cid])
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert user_texts(history(b, cid)) == expected[cid]
    end_cleanly(b)

    c = start(spawn, tmp_path)
    for cid in ("first", "second"):
        assert c.result("getConversation", {"conversationId": cid})["historyLength"] == 8
        assert user_texts(history(c, cid)) == expected[cid]
    end_cleanly(c)
    assert integrity(store_path(tmp_path)) == ["ok"]


def test_seq_after_resume_is_above_shutdown_complete(spawn: Any, tmp_path: Path) -> None:
    """removeConversation and server end both emit shutdownComplete; its seq is not reused."""
    seen = 0
    a = start(spawn, tmp_path)
    a.result("newConversation", {"conversationId": "c"})
    seen = run_turn(a, "c", "one two three four five")[-1]["seq"]
    assert a.result("removeConversation", {"conversationId": "c"}) == {"removed": True}
    shutdown = a.wait_event("c", "shutdownComplete")
    assert shutdown["seq"] == seen + 1
    seen = shutdown["seq"]
    info = a.result("getConversation", {"conversationId": "c"})
    assert info["loaded"] is False and info["lastSeq"] == seen
    # Resumed in the same process, then ended by the end of input.
    a.result("resumeConversation", {"conversationId": "c"})
    events = run_turn(a, "c", "six seven eight nine ten")
    assert events[0]["seq"] == seen + 1
    seen = events[-1]["seq"]
    (last,) = end_cleanly(a)
    assert last["params"]["event"]["type"] == "shutdownComplete"
    assert last["params"]["seq"] == seen + 1
    seen = last["params"]["seq"]

    b = start(spawn, tmp_path)
    assert b.result("getConversation", {"conversationId": "c"})["lastSeq"] == seen
    b.result("resumeConversation", {"conversationId": "c"})
    events = run_turn(b, "c", "eleven")
    assert events[0]["seq"] == seen + 1
    end_cleanly(b)


def test_fork_of_stored_unloaded_conversation(spawn: Any, tmp_path: Path) -> None:
    a = start(spawn, tmp_path)
    a.result("newConversation", {"conversationId": "src", "instructions": "be brief"})
    for text in ("one", "two", "three"):
        run_turn(a, "src", text)
    end_cleanly(a)
    b = start(spawn, tmp_path)
    forked = b.result(
        "forkConversation",
        {"conversationId": "src", "dropLastMessages": 2, "overrides": {"conversationId": "f"}},
    )
    configured = forked["sessionConfigured"]
    assert (configured["forkedFrom"], configured["historyLength"]) == ("src", 2)
    assert configured["instructions"] == "be brief"
    assert user_texts(history(b, "f")) == ["one", "one"]
    info = b.result("getConversation", {"conversationId": "f"})
    assert (info["preview"], info["loaded"]) == ("one", True)
    assert b.result("getConversation", {"conversationId": "src"})["loaded"] is False
    # The fork is a conversation of its own: it runs turns and is stored.
    events = run_turn(b, "f", "four")
    assert events[0]["seq"] == 1
    error = b.error(
        "forkConversation", {"conversationId": "src", "overrides": {"conversationId": "f"}}
    )
    assert error["code"] == -32003
    end_cleanly(b)
    c = start(spawn, tmp_path)
    assert user_texts(history(c, "f")) == ["one", "one", "four", "four"]
    assert user_texts(history(c, "src")) == [t for t in ("one", "two", "three") for _ in (0, 1)]


# --- kill -9 ----------------------------------------------------------------------------

CRASH_ITERATIONS = 15
CRASH_CONVERSATIONS = ("k0", "k1", "k2")


def crash_text(rng: random.Random, iteration: int, cid: str, n: int) -> str:
    """A unique turn input; long ones stream for a while, so kills land mid-turn."""
    words = rng.choice((1, 5, 40, 400, 2000))
    return f"{cid}-{iteration}-{n} " + " ".join(f"w{i}" for i in range(words))


def crash_session(
    client: Client, rng: random.Random, iteration: int
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """Run lock-step turns on every conversation until the server is killed.

    Returns, per conversation, the inputs of the turns whose turnComplete reached
    stdout, and the input of the turn in flight when the server died (if any).
    """
    mode = rng.choice(("timer", "delta", "between"))
    sent = 0
    pending: dict[Any, tuple[str, str]] = {}  # request id -> (cid, text)
    turn_text: dict[str, str] = {}  # turn id -> text
    in_flight: dict[str, str | None] = dict.fromkeys(CRASH_CONVERSATIONS)
    completed: dict[str, list[str]] = {cid: [] for cid in CRASH_CONVERSATIONS}
    kill_after_deltas = rng.randrange(1, 3000)
    kill_after_turns = rng.randrange(0, 12)
    deltas = 0
    killed = threading.Event()

    def kill() -> None:
        if not killed.is_set():
            killed.set()
            client.proc.send_signal(signal.SIGKILL)

    def send(cid: str) -> None:
        nonlocal sent
        text = crash_text(rng, iteration, cid, sent)
        sent += 1
        msg_id = client.next_id()
        pending[msg_id] = (cid, text)
        in_flight[cid] = text
        with contextlib.suppress(OSError):  # killed meanwhile
            client.send(
                {
                    "jsonrpc": "2.0",
                    "id": msg_id,
                    "method": "sendUserTurn",
                    "params": {"conversationId": cid, "input": text_input(text)},
                }
            )

    timer = None
    if mode == "timer":
        timer = threading.Timer(rng.uniform(0.0, 0.3), kill)
        timer.start()
    for cid in CRASH_CONVERSATIONS:
        send(cid)
    try:
        while True:
            msg = client.read_message()
            if "method" not in msg:
                assert "result" in msg, msg
                cid, text = pending.pop(msg["id"])
                turn_text[msg["result"]["turnId"]] = text
                continue
            params = msg["params"]
            cid, event = params["conversationId"], params["event"]
            if event["type"] == "agentMessageDelta":
                deltas += 1
                if mode == "delta" and deltas >= kill_after_deltas:
                    kill()
            if event["type"] not in TERMINAL:
                continue
            assert event["type"] == "turnComplete", event
            text = turn_text[params["turnId"]]
            assert event["lastAgentMessage"] == text
            completed[cid].append(text)
            in_flight[cid] = None
            if killed.is_set():
                continue  # draining what reached the pipe before the kill
            if mode == "between" and sum(map(len, completed.values())) >= kill_after_turns:
                if all(value is None for value in in_flight.values()):
                    kill()  # every conversation idle: between turns
                continue
            send(cid)
    except ServerClosed:
        pass
    except ProtocolViolation as exc:
        # A kill can cut the last write short: a partial message at the very end.
        if not (killed.is_set() and str(exc).startswith("stdout ended inside a message")):
            raise
    finally:
        if timer is not None:
            timer.cancel()
            kill()
    client.proc.wait(10)
    return completed, in_flight


def test_kill_9_at_random_points_loses_no_completed_turn(spawn: Any, tmp_path: Path) -> None:
    rng = random.Random(20240603)
    path = store_path(tmp_path)
    expected: dict[str, list[str]] = {cid: [] for cid in CRASH_CONVERSATIONS}
    for iteration in range(CRASH_ITERATIONS):
        client = start(spawn, tmp_path)
        for cid in CRASH_CONVERSATIONS:
            if iteration == 0:
                client.result("newConversation", {"conversationId": cid})
            else:
                # The killed owner's lease is recovered without any unlock step.
                client.result("resumeConversation", {"conversationId": cid})
            hist = history(client, cid)
            assert user_texts(hist) == [t for text in expected[cid] for t in (text, text)]
        completed, in_flight = crash_session(client, rng, iteration)
        assert integrity(path) == ["ok"]
        checker = start(spawn, tmp_path)
        for cid in CRASH_CONVERSATIONS:
            hist = history(checker, cid)
            # No partial turn: whole user/assistant pairs, each reply equal to its input.
            assert len(hist) % 2 == 0
            assert [item["role"] for item in hist] == ["user", "assistant"] * (len(hist) // 2)
            texts = user_texts(hist)
            assert texts[0::2] == texts[1::2]
            stored = texts[0::2]
            # Every turn whose turnComplete reached stdout is there, in order; at most
            # the turn in flight at the kill (committed, terminal event lost) follows.
            want = expected[cid] + completed[cid]
            assert stored in (want, [*want, in_flight[cid]]), (iteration, cid)
            expected[cid] = stored
            info = checker.result("getConversation", {"conversationId": cid})
            assert info["historyLength"] == len(hist)
        end_cleanly(checker)
    assert sum(map(len, expected.values())) > CRASH_ITERATIONS
    assert integrity(path) == ["ok"]


# --- two processes --------------------------------------------------------------------------


def test_two_processes_share_a_store(spawn: Any, tmp_path: Path) -> None:
    a = start(spawn, tmp_path)
    for cid in ("owned", "crashed"):
        a.result("newConversation", {"conversationId": cid})
        run_turn(a, cid, f"hello from a in {cid}")
    b = start(spawn, tmp_path)
    # B lists and reads what A has open.
    listed = b.result("listConversations", {})
    assert {item["conversationId"] for item in listed["items"]} == {"owned", "crashed"}
    assert all(item["loaded"] is False for item in listed["items"])
    assert user_texts(history(b, "owned")) == ["hello from a in owned"] * 2
    # ... but cannot resume it.
    for cid in ("owned", "crashed"):
        error = b.error("resumeConversation", {"conversationId": cid})
        assert error["code"] == CONFLICT, error
    # A's later turn is visible to B as soon as it completed.
    run_turn(a, "owned", "second turn")
    assert user_texts(history(b, "owned"))[-1] == "second turn"
    # A removes one without deleting: released at once, B may take it.
    b.result("newConversation", {"conversationId": "from-b"})
    error = a.error("resumeConversation", {"conversationId": "from-b"})
    assert error["code"] == CONFLICT
    error = a.error("removeConversation", {"conversationId": "from-b", "deleteHistory": True})
    assert error["code"] == CONFLICT
    assert b.result("getConversation", {"conversationId": "from-b"})["loaded"] is True

    # A crashes: B recovers the lease without any unlock.
    kill9(a)
    for cid in ("owned", "crashed"):
        b.result("resumeConversation", {"conversationId": cid})
        run_turn(b, cid, f"b continues {cid}")
    assert user_texts(history(b, "crashed")) == [
        "hello from a in crashed",
        "hello from a in crashed",
        "b continues crashed",
        "b continues crashed",
    ]
    # Clean exit of B releases everything; C resumes all three.
    end_cleanly(b)
    c = start(spawn, tmp_path)
    for cid in ("owned", "crashed", "from-b"):
        c.result("resumeConversation", {"conversationId": cid})
    end_cleanly(c)
    assert integrity(store_path(tmp_path)) == ["ok"]


def test_clean_exit_releases_the_lease(spawn: Any, tmp_path: Path) -> None:
    a = start(spawn, tmp_path)
    b = start(spawn, tmp_path)
    a.result("newConversation", {"conversationId": "x"})
    assert b.error("resumeConversation", {"conversationId": "x"})["code"] == CONFLICT
    end_cleanly(a)
    b.result("resumeConversation", {"conversationId": "x"})
    run_turn(b, "x", "mine now")
    # removeConversation releases too (no process exit needed).
    b.result("removeConversation", {"conversationId": "x"})
    a2 = start(spawn, tmp_path)
    a2.result("resumeConversation", {"conversationId": "x"})
    assert user_texts(history(a2, "x")) == ["mine now", "mine now"]


# --- pagination -----------------------------------------------------------------------------


def create_many(client: Client, ids: list[str]) -> None:
    """newConversation for every id, pipelined; waits for all the answers."""
    msgs = [
        {
            "jsonrpc": "2.0",
            "id": client.next_id(),
            "method": "newConversation",
            "params": {"conversationId": cid},
        }
        for cid in ids
    ]
    client.send_many(msgs)
    for msg in msgs:
        assert "result" in client.response(msg["id"])


def test_paging_while_another_process_creates(spawn: Any, tmp_path: Path) -> None:
    reader = start(spawn, tmp_path)
    writer = start(spawn, tmp_path)
    before = [f"old-{n:04}" for n in range(600)]
    create_many(writer, before)
    created = [f"new-{n:04}" for n in range(1200)]
    chunks = [created[n : n + 100] for n in range(0, len(created), 100)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 50}
        if cursor is not None:
            params["cursor"] = cursor
        page = reader.result("listConversations", params)
        pages += 1
        seen += [item["conversationId"] for item in page["items"]]
        cursor = page["nextCursor"]
        if chunks:
            create_many(writer, chunks.pop(0))  # 1,200 created while paging
        if cursor is None:
            break
    assert not chunks, "the creation must overlap the paging"
    assert len(seen) == len(set(seen)), "a conversation was listed twice"
    assert set(before) <= set(seen), "a conversation that existed at the first page was missed"
    assert pages >= 12
    # Everything is there at the end, newest first.
    everything: list[str] = []
    cursor = None
    while True:
        page = reader.result(
            "listConversations", {"limit": 500, **({"cursor": cursor} if cursor else {})}
        )
        everything += [item["conversationId"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(everything) == sorted(before + created)
    assert everything[:3] == created[::-1][:3]


# --- bad input ---------------------------------------------------------------------------------

BAD_IDS = ("a/b", "..", "../x", "x" * 129, ".hidden", "")


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_bad_conversation_ids_are_invalid_params(spawn: Any, tmp_path: Path, bad_id: str) -> None:
    client = start(spawn, tmp_path)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("newConversation", {"conversationId": bad_id}),
        ("getConversation", {"conversationId": bad_id}),
        ("resumeConversation", {"conversationId": bad_id}),
        ("removeConversation", {"conversationId": bad_id, "deleteHistory": True}),
        ("sendUserTurn", {"conversationId": bad_id, "input": text_input("hi")}),
        ("interruptConversation", {"conversationId": bad_id}),
        ("forkConversation", {"conversationId": bad_id}),
        ("forkConversation", {"history": [], "overrides": {"conversationId": bad_id}}),
    ]
    for method, params in calls:
        error = client.error(method, params)
        assert error["code"] == INVALID_PARAMS, (method, error)
    assert client.result("listConversations", {})["items"] == []
    end_cleanly(client)
    # Nothing but the store (and its WAL companions) was created next to it.
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("s.sqlite3")} <= {
        "s.sqlite3",
        "s.sqlite3-wal",
        "s.sqlite3-shm",
    }


def test_128_character_id_is_fine(spawn: Any, tmp_path: Path) -> None:
    client = start(spawn, tmp_path)
    cid = "A-z_0.9" + "x" * 121
    assert len(cid) == 128
    client.result("newConversation", {"conversationId": cid})
    run_turn(client, cid, "ok")
    end_cleanly(client)


def expect_startup_failure(spawn: Any, store: Path) -> str:
    """The server refuses to start on this store: exit 2, nothing on stdout, one stderr line."""
    client = spawn("--store", store)
    assert client.read_until_eof() == []
    assert client.wait() == 2
    err = client.stderr()
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("convmgr: "), err
    return err


def test_store_under_a_regular_file_exits_2(spawn: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_bytes(b"not a directory")
    err = expect_startup_failure(spawn, blocker / "s.sqlite3")
    assert str(blocker) in err
    assert blocker.read_bytes() == b"not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")
def test_store_in_read_only_directory_exits_2(spawn: Any, tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        err = expect_startup_failure(spawn, directory / "s.sqlite3")
        assert "not writable" in err or "ermission" in err
        assert list(directory.iterdir()) == []
    finally:
        directory.chmod(0o700)


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file\n" * 100,
        bytes(range(256)) * 64,
        b"SQLite format 3\x00" + b"\xff" * 5000,
    ],
)
def test_store_that_is_not_a_database_exits_2_untouched(
    spawn: Any, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    path.chmod(0o644)
    before = path.stat()
    expect_startup_failure(spawn, path)
    after = path.stat()
    assert path.read_bytes() == content
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_mode,
        before.st_size,
        before.st_mtime_ns,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- export / import through the command line -----------------------------------------------------


def cli(
    tmp_path: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m convmgr ARGS` to completion in the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "convmgr", *args],
        input=stdin,
        capture_output=True,
        env=server_env(tmp_path),
        timeout=30,
        check=False,
    )


def test_export_import_round_trip(spawn: Any, tmp_path: Path) -> None:
    a = start(spawn, tmp_path)
    a.result(
        "newConversation",
        {"conversationId": "src", "instructions": "be brief", "metadata": {"k": ["é", 1]}},
    )
    for text in ("first question", "second question"):
        run_turn(a, "src", text)
    end_cleanly(a)
    source = str(store_path(tmp_path))

    exported = cli(tmp_path, "export", "src", "--store", source)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.decode().splitlines()]
    header, items = lines[0], lines[1:]
    assert header["type"] == "conversation" and header["conversationId"] == "src"
    assert header["instructions"] == "be brief" and header["metadata"] == {"k": ["é", 1]}
    assert user_texts(items) == ["first question"] * 2 + ["second question"] * 2

    # Into another store, via a file and via stdin (under a new id).
    other = str(tmp_path / "other.sqlite3")
    dump = tmp_path / "src.jsonl"
    dump.write_bytes(exported.stdout)
    imported = cli(tmp_path, "import", str(dump), "--store", other)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.decode() == "src\n"
    renamed = json.dumps({**header, "conversationId": "copy"}) + "\n"
    renamed += "".join(json.dumps(item) + "\n" for item in items)
    imported = cli(tmp_path, "import", "-", "--store", other, stdin=renamed.encode())
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.decode() == "copy\n"
    again = cli(tmp_path, "export", "src", "--store", other)
    assert again.returncode == 0
    assert [json.loads(line) for line in again.stdout.decode().splitlines()][1:] == items

    # The imported conversation is resumable and continues.
    b = spawn("--store", other)
    listed = b.result("listConversations", {})["items"]
    assert sorted(item["conversationId"] for item in listed) == ["copy", "src"]
    b.result("resumeConversation", {"conversationId": "copy"})
    assert user_texts(history(b, "copy")) == user_texts(items)
    run_turn(b, "copy", "third")
    end_cleanly(b)

    # Importing the same id twice is refused.
    imported = cli(tmp_path, "import", str(dump), "--store", other)
    assert imported.returncode == 1
    assert b"src" in imported.stderr

    # Unknown id: exit 1, one line.
    missing = cli(tmp_path, "export", "nope", "--store", source)
    assert missing.returncode == 1 and missing.stdout == b""
    assert missing.stderr.decode().count("\n") == 1


def test_import_of_a_bad_file_names_the_line(tmp_path: Path) -> None:
    good_header = {"type": "conversation", "conversationId": "x", "provider": "echo", "model": "e"}
    item = {"type": "message", "role": "user", "content": [{"type": "text", "text": "hi"}]}
    store = str(store_path(tmp_path))
    bad = tmp_path / "bad.jsonl"
    cases = {
        3: [json.dumps(good_header), json.dumps(item), "{not json", json.dumps(item)],
        2: [json.dumps(good_header), json.dumps({"type": "message", "role": "nobody"})],
        1: [json.dumps({**good_header, "conversationId": "../escape"})],
    }
    for line_no, lines in cases.items():
        bad.write_text("\n".join(lines) + "\n")
        result = cli(tmp_path, "import", str(bad), "--store", store)
        assert result.returncode == 1, result
        err = result.stderr.decode()
        assert err.count("\n") == 1, err
        assert f"line {line_no}" in err, err
        assert result.stdout == b""
    # Nothing half-imported.
    exported = cli(tmp_path, "export", "x", "--store", store)
    assert exported.returncode == 1
