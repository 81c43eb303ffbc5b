"""The wire contract (PROTOCOL.md sections 1-6) through real pipes, in both framings.

Every test spawns `python -m convmgr` and talks to it as a client would; the
client (tests/client.py) checks every message it reads against the JSON-RPC
envelope and the pydantic models of convmgr.protocol, and fails when stdout
carries anything that is not a protocol message.
"""

import json
import sqlite3

import pytest
from client import TERMINAL, frame, text_input

from convmgr.dialects.convmgr.errors import ConvmgrCode, ErrorCode

MIB = 1 << 20


@pytest.fixture(params=["ndjson", "lsp"])
def framing(request):
    """Both framings; the server detects them (`--framing auto`) unless a test says so."""
    return request.param


@pytest.fixture
def server(spawn, framing):
    """A memory-only server in the parametrized framing."""
    return spawn("--no-store", framing=framing)


def new(client, conversation_id=None, **params):
    """newConversation; its result."""
    if conversation_id is not None:
        params["conversationId"] = conversation_id
    return client.result("newConversation", params)


def run_turn(client, conversation_id, text):
    """sendUserTurn and the turn's events up to its terminal one (older kept events of
    the conversation are dropped)."""
    client.notifications = [
        n for n in client.notifications if n["params"]["conversationId"] != conversation_id
    ]
    turn_id = client.result(
        "sendUserTurn", {"conversationId": conversation_id, "input": text_input(text)}
    )["turnId"]
    events = client.collect_turn(conversation_id)
    assert {e["turnId"] for e in events} == {turn_id}
    return turn_id, events


def assert_consecutive(events, first=1):
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), seqs


def envelope_of(response, msg_id):
    assert response["jsonrpc"] == "2.0"
    assert response["id"] == msg_id and type(response["id"]) is type(msg_id)


# --- lifecycle ------------------------------------------------------------------------


def test_initialize_ping_shutdown_exit(spawn, framing):
    client = spawn("--no-store", "--framing", framing, framing=framing)
    init = client.result(
        "initialize",
        {"protocolVersion": "1", "clientInfo": {"name": "tests", "version": "0"}},
    )
    assert init["protocolVersion"] == "1"
    assert init["serverInfo"]["name"] == "convmgr"
    assert {"name": "echo", "kind": "echo", "defaultModel": "echo"} in init["providers"]
    assert init["capabilities"]["persistentStore"] is False
    client.notify("initialized", {})
    assert client.result("ping") == {}
    assert client.notifications == []  # `initialized` is answered with nothing

    err = client.error("initialize", {})
    assert err["code"] == ErrorCode.INVALID_REQUEST

    new(client, "c1")
    assert client.result("shutdown") == {}
    # Stop accepting new work: every later request but ping is an invalid request.
    for method, params in [
        ("newConversation", {}),
        ("getConversation", {"conversationId": "c1"}),
        ("listConversations", {}),
        ("shutdown", None),
    ]:
        assert client.error(method, params)["code"] == ErrorCode.INVALID_REQUEST
    assert client.result("ping") == {}
    client.notify("exit")
    # The conversation loaded at shutdown ended with shutdownComplete.
    rest = client.read_until_eof()
    events = client.events("c1") + [m["params"] for m in rest if "method" in m]
    assert [e["event"]["type"] for e in events] == ["shutdownComplete"]
    assert [m for m in rest if "method" not in m] == []
    assert client.wait() == 0


def test_implicit_initialize(server):
    """A first request other than initialize initializes; initialize after it is -32600."""
    new(server, "a")
    assert server.error("initialize", {})["code"] == ErrorCode.INVALID_REQUEST
    assert server.result("getConversation", {"conversationId": "a"})["conversationId"] == "a"


def test_exit_without_shutdown(server):
    new(server, "a")
    server.notify("exit")
    events = [m["params"]["event"]["type"] for m in server.read_until_eof()]
    assert events == ["shutdownComplete"]
    assert server.wait() == 0


def test_shutdown_aborts_running_turns(server):
    new(server, "idle")
    new(server, "busy")
    turn_id = server.result(
        "sendUserTurn", {"conversationId": "busy", "input": text_input("w " * 1_000_000)}
    )["turnId"]
    server.wait_event("busy", "turnStarted")
    assert server.result("shutdown") == {}
    # Before the shutdown response: the turn aborted (shutdown), then every conversation ended.
    busy = [e for e in server.events("busy") if e["event"]["type"] != "agentMessageDelta"]
    assert [e["event"] for e in busy] == [
        {"type": "turnAborted", "reason": "shutdown"},
        {"type": "shutdownComplete"},
    ]
    assert busy[0]["turnId"] == turn_id
    assert [e["event"]["type"] for e in server.events("idle")] == ["shutdownComplete"]
    assert (
        server.error("sendUserTurn", {"conversationId": "busy", "input": text_input("x")})["code"]
        == ErrorCode.INVALID_REQUEST
    )
    server.notify("exit")
    server.expect_eof()
    assert server.wait() == 0


def test_end_of_input_edge_cases(spawn, framing):
    """A last ndjson line without a newline is still answered; a frame cut short by the
    end of input is a parse error; either way the exit status is 0."""
    client = spawn("--no-store", framing=framing)
    assert client.result("ping") == {}
    if framing == "ndjson":
        client.send_raw(b'{"jsonrpc": "2.0", "id": "last", "method": "ping"}')
    else:
        client.send_raw(b'Content-Length: 100\r\n\r\n{"id": "last"')
    client.close_stdin()
    (last,) = client.read_until_eof()
    if framing == "ndjson":
        assert last == {"jsonrpc": "2.0", "id": "last", "result": {}}
    else:
        assert last["error"]["code"] == ErrorCode.PARSE_ERROR and last["id"] is None
    assert client.wait() == 0


def test_signal_while_idle(server):
    assert server.result("ping") == {}
    server.signal()
    assert server.wait(5) == 0
    server.expect_eof()


# --- conversation methods -----------------------------------------------------------------


def test_new_and_get_conversation(server):
    made = new(
        server,
        "conv-1.x_Y",
        instructions="be brief",
        cwd="/tmp",
        metadata={"k": [1, 2]},
        temperature=0.5,
        maxOutputTokens=10,
    )
    assert made["conversationId"] == "conv-1.x_Y"
    configured = made["sessionConfigured"]
    assert configured["conversationId"] == "conv-1.x_Y"
    assert configured["provider"] == "echo" and configured["model"] == "echo"
    assert configured["instructions"] == "be brief" and configured["cwd"] == "/tmp"
    assert configured["forkedFrom"] is None and configured["historyLength"] == 0

    generated = new(server)
    assert generated["conversationId"] and generated["conversationId"] != "conv-1.x_Y"
    assert generated["sessionConfigured"]["conversationId"] == generated["conversationId"]

    info = server.result("getConversation", {"conversationId": "conv-1.x_Y"})
    assert info["status"] == "idle" and info["loaded"] is True
    assert info["historyLength"] == 0 and info["lastSeq"] == 0
    assert info["metadata"] == {"k": [1, 2]}
    assert info["createdAt"] == configured["createdAt"]
    assert "history" not in info or info["history"] is None
    # Creating a conversation says nothing but its response.
    assert server.notifications == []


def test_result_with_error_and_result_keys_stays_inside_result(server):
    """A result dict with keys named "error" and "result" is not merged into the envelope."""
    metadata = {"error": 1, "result": 2}
    new(server, "m", metadata=metadata)
    msg_id = server.next_id()
    response = server.request("getConversation", {"conversationId": "m"}, msg_id=msg_id)
    assert set(response) == {"jsonrpc", "id", "result"}
    envelope_of(response, msg_id)
    assert response["result"]["metadata"] == metadata
    assert response["result"]["conversationId"] == "m"
    listed = server.request("listConversations", {})
    assert set(listed) == {"jsonrpc", "id", "result"}
    assert listed["result"]["items"][0]["metadata"] == metadata


def test_turn_events_and_history(server):
    new(server, "t")
    text = "  hello   echo\tworld \n"
    turn_id, events = run_turn(server, "t", text)
    types = [e["event"]["type"] for e in events]
    assert types[0] == "turnStarted"
    assert types[-3:] == ["agentMessage", "tokenUsage", "turnComplete"]
    deltas = [e["event"]["delta"] for e in events if e["event"]["type"] == "agentMessageDelta"]
    assert deltas == ["  hello   ", "echo\t", "world \n"]
    assert events[-3]["event"]["text"] == text
    assert events[-1]["event"]["lastAgentMessage"] == text
    assert_consecutive(events)

    # Several text items are joined with "\n"; empty input gives no delta.
    server.result(
        "sendUserTurn",
        {"conversationId": "t", "input": [{"type": "text", "text": "a"}, {"text": "b"}]},
    )
    second = server.collect_turn("t")
    assert second[-1]["event"]["lastAgentMessage"] == "a\nb"
    _, third = run_turn(server, "t", "")
    assert [e["event"]["type"] for e in third] == [
        "turnStarted",
        "agentMessage",
        "tokenUsage",
        "turnComplete",
    ]
    assert third[1]["event"]["text"] == ""
    assert_consecutive(events + second + third)

    info = server.result("getConversation", {"conversationId": "t"})
    assert info["historyLength"] == 6
    assert info["lastSeq"] == third[-1]["seq"]
    assert info["status"] == "idle"

    full = server.result("getConversation", {"conversationId": "t", "includeHistory": True})
    history = full["history"]
    assert [(h["role"], h["content"][0]["text"]) for h in history] == [
        ("user", text),
        ("assistant", text),
        ("user", "a\nb"),
        ("assistant", "a\nb"),
        ("user", ""),
        ("assistant", ""),
    ]
    page = server.result(
        "getConversation",
        {"conversationId": "t", "includeHistory": True, "historyOffset": 1, "historyLimit": 2},
    )
    assert page["history"] == history[1:3]
    tail = server.result(
        "getConversation", {"conversationId": "t", "includeHistory": True, "historyOffset": 5}
    )
    assert tail["history"] == history[5:]
    none = server.result(
        "getConversation",
        {"conversationId": "t", "includeHistory": True, "historyOffset": 99, "historyLimit": 3},
    )
    assert none["history"] == []
    assert turn_id


def test_fork_by_id_and_by_history(server):
    new(server, "src", instructions="sys", metadata={"x": 1})
    run_turn(server, "src", "u1")
    run_turn(server, "src", "u2")

    whole = server.result("forkConversation", {"conversationId": "src"})
    assert whole["sessionConfigured"]["forkedFrom"] == "src"
    assert whole["sessionConfigured"]["historyLength"] == 4
    assert whole["sessionConfigured"]["instructions"] == "sys"
    assert whole["conversationId"] not in ("src", None)

    fork = server.result(
        "forkConversation",
        {
            "conversationId": "src",
            "dropLastMessages": 1,
            "overrides": {"conversationId": "f1", "instructions": "other"},
        },
    )
    assert fork["conversationId"] == "f1"
    assert fork["sessionConfigured"]["instructions"] == "other"
    assert fork["sessionConfigured"]["historyLength"] == 2
    got = server.result("getConversation", {"conversationId": "f1", "includeHistory": True})
    assert [h["content"][0]["text"] for h in got["history"]] == ["u1", "u1"]
    assert got["forkedFrom"] == "src" and got["metadata"] == {"x": 1}

    emptied = server.result("forkConversation", {"conversationId": "src", "dropLastMessages": 5})
    assert emptied["sessionConfigured"]["historyLength"] == 0

    # The seed's case: u1 a1 a2 u2 a3 reasoning functionCall a4.
    def msg(role, text):
        return {"type": "message", "role": role, "content": [{"type": "text", "text": text}]}

    history = [
        msg("user", "u1"),
        msg("assistant", "a1"),
        msg("assistant", "a2"),
        msg("user", "u2"),
        msg("assistant", "a3"),
        {"type": "reasoning", "text": "r"},
        {"type": "functionCall", "callId": "c", "name": "f", "arguments": "{}"},
        msg("assistant", "a4"),
    ]
    expected = {0: 8, 1: 3, 2: 0}
    for drop, length in expected.items():
        made = server.result(
            "forkConversation",
            {
                "history": history,
                "dropLastMessages": drop,
                "overrides": {"conversationId": f"h{drop}"},
            },
        )
        assert made["sessionConfigured"]["forkedFrom"] is None
        assert made["sessionConfigured"]["historyLength"] == length
    kept = server.result("getConversation", {"conversationId": "h1", "includeHistory": True})
    assert kept["history"] == history[:3]
    kept = server.result("getConversation", {"conversationId": "h0", "includeHistory": True})
    assert kept["history"] == history
    # The fork is a conversation of its own: it takes turns, the source is unchanged.
    run_turn(server, "h1", "more")
    assert server.result("getConversation", {"conversationId": "src"})["historyLength"] == 4

    err = server.error("forkConversation", {})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = server.error("forkConversation", {"conversationId": "src", "history": history})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = server.error("forkConversation", {"conversationId": "nope"})
    assert err["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND


def test_fork_of_a_running_conversation_sees_completed_turns(server):
    new(server, "run")
    run_turn(server, "run", "done")
    server.result("sendUserTurn", {"conversationId": "run", "input": text_input("w " * 1_000_000)})
    server.wait_event("run", "turnStarted")
    fork = server.result("forkConversation", {"conversationId": "run"})
    assert fork["sessionConfigured"]["historyLength"] == 2
    forked = server.result(
        "getConversation", {"conversationId": fork["conversationId"], "includeHistory": True}
    )
    assert [h["content"][0]["text"] for h in forked["history"]] == ["done", "done"]
    assert forked["status"] == "idle"
    assert server.result("getConversation", {"conversationId": "run"})["status"] == "running"
    server.result("interruptConversation", {"conversationId": "run"})
    server.wait_event("run", "turnAborted")


def test_text_survives_the_wire(server, framing):
    """Non-ASCII, escapes, U+2028 and control characters come back exactly; ndjson output
    never has a raw newline inside a message (the client would fail to parse it)."""
    new(server, "txt")
    text = 'héllo 🌍 "quoted" back\\slash\nnew line\u2028sep\ttab\u0000nul \r\n end'
    _, events = run_turn(server, "txt", text)
    assert events[-1]["event"]["lastAgentMessage"] == text
    history = server.result("getConversation", {"conversationId": "txt", "includeHistory": True})
    assert history["history"][0]["content"][0]["text"] == text
    if framing == "ndjson":
        # A CRLF line ending is accepted.
        server.send_raw(b'{"jsonrpc":"2.0","id":"crlf","method":"ping"}\r\n')
        assert server.read_message() == {"jsonrpc": "2.0", "id": "crlf", "result": {}}
    else:
        # Extra headers and any case of the header name are accepted.
        body = b'{"jsonrpc":"2.0","id":"hdr","method":"ping"}'
        server.send_raw(
            b"content-length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8"
            b"\r\n\r\n%s" % (len(body), body)
        )
        assert server.read_message() == {"jsonrpc": "2.0", "id": "hdr", "result": {}}
    # A message written one byte at a time.
    for byte in frame(b'{"jsonrpc":"2.0","id":"bytes","method":"ping"}', framing):
        server.send_raw(bytes([byte]))
    assert server.read_message() == {"jsonrpc": "2.0", "id": "bytes", "result": {}}


def test_interrupt(server):
    new(server, "i")
    assert server.result("interruptConversation", {"conversationId": "i"}) == {"interrupted": False}
    turn_id = server.result(
        "sendUserTurn", {"conversationId": "i", "input": text_input("w " * 1_000_000)}
    )["turnId"]
    server.wait_event("i", "turnStarted")
    assert server.result("interruptConversation", {"conversationId": "i"}) == {"interrupted": True}
    aborted = server.wait_event("i", "turnAborted")
    assert aborted["turnId"] == turn_id
    assert aborted["event"]["reason"] == "interrupted"
    # The conversation is usable again.
    _, events = run_turn(server, "i", "again")
    assert events[-1]["event"] == {"type": "turnComplete", "lastAgentMessage": "again"}
    assert server.result("getConversation", {"conversationId": "i"})["status"] == "idle"


def test_list_conversations_paging(server):
    ids = [f"l{i}" for i in range(7)]
    for cid in ids:
        new(server, cid)
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        page = server.result("listConversations", params)
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        cursor = page["nextCursor"]
        pages += 1
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert sorted(item["conversationId"] for item in seen) == sorted(ids)
    keys = [(item["updatedAt"], item["conversationId"]) for item in seen]
    assert keys == sorted(keys, reverse=True)  # newest first
    assert all(item["loaded"] for item in seen)

    everything = server.result("listConversations", {"limit": 500})
    assert [i["conversationId"] for i in everything["items"]] == [i["conversationId"] for i in seen]
    assert everything["nextCursor"] is None
    # A turn makes a conversation the newest.
    run_turn(server, "l0", "bump")
    top = server.result("listConversations", {"limit": 1})
    assert top["items"][0]["conversationId"] == "l0"
    assert top["nextCursor"] is not None

    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": "!!not-a-cursor!!"}):
        assert server.error("listConversations", bad)["code"] == ErrorCode.INVALID_PARAMS


def test_remove_and_resume(server):
    new(server, "r", instructions="keep me")
    run_turn(server, "r", "hi there")
    assert server.result("removeConversation", {"conversationId": "r"}) == {"removed": True}
    gone = server.events("r")
    assert [e["event"]["type"] for e in gone] == ["shutdownComplete"]
    assert gone[0]["turnId"] is None

    stored = server.result("getConversation", {"conversationId": "r"})
    assert stored["loaded"] is False and stored["historyLength"] == 2
    assert (
        server.error("sendUserTurn", {"conversationId": "r", "input": text_input("x")})["code"]
        == ConvmgrCode.CONVERSATION_NOT_FOUND
    )
    assert server.result("removeConversation", {"conversationId": "r"}) == {"removed": False}

    resumed = server.result("resumeConversation", {"conversationId": "r"})
    assert resumed["conversationId"] == "r"
    assert resumed["sessionConfigured"]["historyLength"] == 2
    assert resumed["sessionConfigured"]["instructions"] == "keep me"
    # Resuming a loaded conversation answers with it as it is.
    again = server.result("resumeConversation", {"conversationId": "r"})
    assert again["sessionConfigured"] == resumed["sessionConfigured"]
    assert server.result("getConversation", {"conversationId": "r"})["loaded"] is True
    _, events = run_turn(server, "r", "back")
    assert events[-1]["event"]["lastAgentMessage"] == "back"
    history = server.result("getConversation", {"conversationId": "r", "includeHistory": True})
    assert [h["content"][0]["text"] for h in history["history"]] == [
        "hi there",
        "hi there",
        "back",
        "back",
    ]

    # deleteHistory forgets it for good.
    assert server.result("removeConversation", {"conversationId": "r", "deleteHistory": True}) == {
        "removed": True
    }
    assert (
        server.error("getConversation", {"conversationId": "r"})["code"]
        == ConvmgrCode.CONVERSATION_NOT_FOUND
    )
    assert (
        server.error("resumeConversation", {"conversationId": "r"})["code"]
        == ConvmgrCode.CONVERSATION_NOT_FOUND
    )
    assert server.result("removeConversation", {"conversationId": "unknown"}) == {"removed": False}


def test_seq_keeps_growing_across_remove_and_resume(server):
    """PROTOCOL §3.3: seq grows by exactly 1 per notification of a conversation, and
    a resumed conversation is the same conversation: its shutdownComplete counts."""
    new(server, "s")
    _, first = run_turn(server, "s", "one")
    server.result("removeConversation", {"conversationId": "s"})
    (closed,) = server.events("s")
    server.notifications.clear()
    assert closed["seq"] == first[-1]["seq"] + 1
    stored = server.result("getConversation", {"conversationId": "s"})
    assert stored["lastSeq"] == closed["seq"]
    server.result("resumeConversation", {"conversationId": "s"})
    _, second = run_turn(server, "s", "two")
    assert second[0]["seq"] == closed["seq"] + 1


def test_remove_running_turn(server):
    new(server, "rm")
    turn_id = server.result(
        "sendUserTurn", {"conversationId": "rm", "input": text_input("w " * 1_000_000)}
    )["turnId"]
    server.wait_event("rm", "turnStarted")
    assert server.result("removeConversation", {"conversationId": "rm"}) == {"removed": True}
    # Everything of "rm" after turnStarted: deltas, then turnAborted, then shutdownComplete.
    tail = [e for e in server.events("rm") if e["event"]["type"] != "agentMessageDelta"]
    assert [e["event"]["type"] for e in tail] == ["turnAborted", "shutdownComplete"]
    assert tail[0]["event"]["reason"] == "removed" and tail[0]["turnId"] == turn_id
    assert tail[1]["turnId"] is None
    assert_consecutive([e for e in server.events("rm")], server.events("rm")[0]["seq"])
    server.notifications.clear()
    # Nothing of "rm" follows its shutdownComplete.
    assert server.result("ping") == {}
    assert server.events("rm") == []
    # Its history stays (resumable); it is no longer loaded.
    assert server.result("getConversation", {"conversationId": "rm"})["loaded"] is False


# --- errors -------------------------------------------------------------------------------


def test_error_codes(server):
    err = server.error("noSuchMethod", {})
    assert err["code"] == ErrorCode.METHOD_NOT_FOUND

    err = server.error("newConversation", {"conversationId": ".hidden", "temperature": 7})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    locs = {tuple(e["loc"]) for e in err["data"]["errors"]}
    assert ("conversationId",) in locs and ("temperature",) in locs
    for bad in (
        {"conversationId": ""},
        {"conversationId": "x" * 129},
        {"conversationId": "a/b"},
        {"provider": "no-such-provider"},
    ):
        assert server.error("newConversation", bad)["code"] == ErrorCode.INVALID_PARAMS
    err = server.error("sendUserTurn", {"conversationId": "x"})  # input missing
    assert err["code"] == ErrorCode.INVALID_PARAMS and err["data"]["errors"]
    err = server.error("getConversation", ["positional"])
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = server.error("getConversation")  # params left out
    assert err["code"] == ErrorCode.INVALID_PARAMS and err["data"]["errors"]
    # An unknown notification is ignored: no answer at all.
    server.notify("no/such/notification", {"x": 1})
    assert server.result("ping") == {}
    assert server.notifications == []

    for method in ("getConversation", "sendUserTurn", "interruptConversation"):
        params = {"conversationId": "ghost", "input": text_input("x")}
        err = server.error(method, params)
        assert err["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND, method
        assert err["data"]["conversationId"] == "ghost"

    new(server, "dup")
    err = server.error("newConversation", {"conversationId": "dup"})
    assert err["code"] == ConvmgrCode.CONVERSATION_EXISTS
    assert err["data"]["conversationId"] == "dup"
    err = server.error(
        "forkConversation", {"conversationId": "dup", "overrides": {"conversationId": "dup"}}
    )
    assert err["code"] == ConvmgrCode.CONVERSATION_EXISTS

    server.result("sendUserTurn", {"conversationId": "dup", "input": text_input("w " * 1_000_000)})
    err = server.error("sendUserTurn", {"conversationId": "dup", "input": text_input("again")})
    assert err["code"] == ConvmgrCode.CONVERSATION_BUSY
    assert server.result("getConversation", {"conversationId": "dup"})["status"] == "running"
    assert server.result("interruptConversation", {"conversationId": "dup"})["interrupted"]
    assert server.wait_event("dup", "turnAborted")["event"]["reason"] == "interrupted"

    # Messages never carry a traceback.
    assert "Traceback" not in json.dumps(err)


def test_max_conversations(spawn, framing):
    client = spawn("--no-store", "--max-conversations", "2", framing=framing)
    new(client, "a")
    new(client, "b")
    err = client.error("newConversation", {"conversationId": "c"})
    assert err["code"] == ConvmgrCode.OVERLOADED
    err = client.error("forkConversation", {"conversationId": "a"})
    assert err["code"] == ConvmgrCode.OVERLOADED
    client.result("removeConversation", {"conversationId": "a"})
    new(client, "c")
    err = client.error("resumeConversation", {"conversationId": "a"})
    assert err["code"] == ConvmgrCode.OVERLOADED


def test_invalid_requests(server):
    bad = [
        ({"jsonrpc": "2.0"}, None),
        ({"jsonrpc": "1.0", "id": 5, "method": "ping"}, 5),
        ({"jsonrpc": "2.0", "id": "s", "method": 42}, "s"),
        ({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": 3}, 6),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": 2.0, "id": 8, "method": "ping"}, 8),
        ({"jsonrpc": "2.0", "id": 9}, 9),
        ({"jsonrpc": "2.0", "id": 7, "result": {}, "error": {"code": 1, "message": "x"}}, 7),
        (42, None),
        ("a string", None),
        (None, None),
    ]
    for message, msg_id in bad:
        server.send(message)
        response = server.read_message()
        assert response.get("error", {}).get("code") == ErrorCode.INVALID_REQUEST, message
        envelope_of(response, msg_id)
    assert server.result("ping") == {}


def test_parse_error_then_good_request(server, framing):
    if framing == "ndjson":
        garbage = [b"{not json", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', b"\xff\xfe"]
    else:
        garbage = [b"{not json", b'{"id": 1,', b"\xff\xfe", b""]
    for body in garbage:
        server.send_raw(frame(body, framing))
        response = server.read_message()
        assert response["error"]["code"] == ErrorCode.PARSE_ERROR, body
        envelope_of(response, None)
        assert server.result("ping") == {}
    if framing == "lsp":
        # A broken header block is a parse error too; the next frame is read as usual.
        server.send_raw(b"Content-Type: x\r\n\r\n")
        assert server.read_message()["error"]["code"] == ErrorCode.PARSE_ERROR
        server.send_raw(b"Content-Length: abc\r\n\r\n")
        assert server.read_message()["error"]["code"] == ErrorCode.PARSE_ERROR
        assert server.result("ping") == {}
    else:
        # Blank lines are no messages.
        server.send_raw(b"\n\r\n   \n")
        assert server.result("ping") == {}


def test_batch(server):
    new(server, "b")
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "initialized"},
        5,
        {"jsonrpc": "2.0", "id": 2, "method": "getConversation", "params": {"conversationId": "b"}},
        {"jsonrpc": "2.0", "id": 3, "method": "getConversation", "params": {"conversationId": "z"}},
        {"foo": "bar"},
        {"jsonrpc": "2.0", "id": 4, "method": "noSuchMethod"},
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "newConversation",
            "params": {"conversationId": "b2"},
        },
    ]
    server.send(batch)
    responses = server.read_message()
    assert isinstance(responses, list) and len(responses) == 7
    by_id = {}
    invalid = 0
    for r in responses:
        assert r["jsonrpc"] == "2.0"
        if r["id"] is None:
            assert r["error"]["code"] == ErrorCode.INVALID_REQUEST
            invalid += 1
        else:
            by_id[r["id"]] = r
    assert invalid == 2
    assert by_id[1]["result"] == {}
    assert by_id[2]["result"]["conversationId"] == "b"
    assert by_id[3]["error"]["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND
    assert by_id[4]["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert by_id[5]["result"]["conversationId"] == "b2"

    # All notifications: no response at all (the ping's answer comes next).
    server.send([{"jsonrpc": "2.0", "method": "initialized"}, {"method": "initialized"}])
    msg_id = server.next_id()
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    nxt = server.read_message()
    assert isinstance(nxt, dict) and nxt["id"] == msg_id

    # An empty array: one -32600, not an array.
    server.send([])
    empty = server.read_message()
    assert isinstance(empty, dict)
    assert empty["error"]["code"] == ErrorCode.INVALID_REQUEST
    envelope_of(empty, None)

    # A batch of one invalid element is answered with an array of one.
    server.send([1])
    single = server.read_message()
    assert isinstance(single, list) and len(single) == 1
    assert single[0]["error"]["code"] == ErrorCode.INVALID_REQUEST

    # A batch's requests take turns like any others: a turn, answered before it starts.
    server.send(
        [
            {"id": 10, "method": "newConversation", "params": {"conversationId": "bt"}},
            {
                "id": 11,
                "method": "sendUserTurn",
                "params": {"conversationId": "bt", "input": text_input("batched turn")},
            },
        ]
    )
    answer = server.read_message()
    assert isinstance(answer, list)
    assert sorted(r["id"] for r in answer) == [10, 11]
    assert all("result" in r for r in answer)
    events = server.collect_turn("bt")
    assert events[0]["event"]["type"] == "turnStarted"
    assert events[-1]["event"]["lastAgentMessage"] == "batched turn"


def test_twenty_mib_message(server, framing):
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"a" * (20 * MIB) + b'"}}'
    server.send_raw(frame(big, framing))
    response = server.read_message(timeout=30)
    assert response["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert "too large" in response["error"]["message"]
    envelope_of(response, None)
    assert server.result("ping") == {}
    new(server, "after-big")
    assert server.result("getConversation", {"conversationId": "after-big"})["loaded"]


def test_small_max_message_bytes(spawn, framing):
    client = spawn("--no-store", "--max-message-bytes", "1000", framing=framing)
    assert client.result("ping") == {}
    body = json.dumps({"id": 1, "method": "ping", "params": {"pad": "a" * 2000}}).encode()
    client.send_raw(frame(body, framing) * 3)
    for _ in range(3):
        response = client.read_message()
        assert response["error"]["code"] == ErrorCode.INVALID_REQUEST
        assert "too large" in response["error"]["message"]
    fits = {"id": 2, "method": "ping", "params": {"pad": "a" * 900}}
    assert len(json.dumps(fits)) < 1000
    client.send(fits)
    assert client.read_message() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_ids_null_string_integer_and_no_jsonrpc(server):
    for msg_id in (None, "req-1", 0, -3, 2**53, "", "1"):
        response = server.request("ping", msg_id=msg_id)
        envelope_of(response, msg_id)
        assert response["result"] == {}
    # Deferred work keeps the id too.
    for msg_id in (None, "n-1", 77):
        response = server.request("newConversation", {}, msg_id=msg_id)
        envelope_of(response, msg_id)
        assert response["result"]["conversationId"]
    # No "jsonrpc" (Codex-style): accepted, answered with "jsonrpc": "2.0".
    server.send({"id": 9, "method": "newConversation", "params": {"conversationId": "nj"}})
    response = server.read_message()
    assert response["jsonrpc"] == "2.0" and response["id"] == 9
    assert response["result"]["conversationId"] == "nj"
    server.send({"method": "initialized"})
    server.send({"id": "x", "method": "ping"})
    assert server.read_message() == {"jsonrpc": "2.0", "id": "x", "result": {}}


def test_response_shaped_message_is_ignored(server):
    server.send({"jsonrpc": "2.0", "id": 99, "result": {"anything": 1}})
    server.send({"jsonrpc": "2.0", "id": "q", "error": {"code": -1, "message": "no"}})
    server.send({"id": 98, "result": None})
    msg_id = server.next_id()
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    assert server.read_message() == {"jsonrpc": "2.0", "id": msg_id, "result": {}}


def test_stdout_is_only_protocol_with_debug_logging(spawn, framing, tmp_path):
    """Even with every log line on, stdout carries protocol messages only."""
    client = spawn("--no-store", "--log-level", "debug", framing=framing)
    new(client, "d")
    run_turn(client, "d", "a few words here")
    client.error("noSuchMethod", {})
    client.send_raw(frame(b"{oops", framing))
    assert client.read_message()["error"]["code"] == ErrorCode.PARSE_ERROR
    client.close_stdin()
    rest = client.read_until_eof()
    assert [m["params"]["event"]["type"] for m in rest] == ["shutdownComplete"]
    assert client.wait() == 0
    assert client.stderr().strip()  # the logs went somewhere: stderr

    logged = spawn(
        "--no-store", "--log-level", "debug", "--log-file", tmp_path / "log.txt", framing=framing
    )
    assert logged.result("ping") == {}
    logged.close_stdin()
    logged.expect_eof()
    assert logged.wait() == 0
    assert (tmp_path / "log.txt").read_text().strip()


# --- cancellation (needs a request that stays in flight: a locked SQLite store) ---------------


@pytest.fixture
def locked_store(spawn, framing, tmp_path):
    """A server on a SQLite store, and a function that takes the store's write lock."""
    db = tmp_path / "store.sqlite3"
    client = spawn("--store", db, framing=framing)
    assert client.result("initialize")["capabilities"]["persistentStore"] is True
    holder = sqlite3.connect(db, isolation_level=None, timeout=0)

    def lock():
        holder.execute("BEGIN IMMEDIATE")

    def unlock():
        holder.execute("ROLLBACK")

    yield client, lock, unlock
    holder.close()


def test_cancel_requests_queued_behind_one_in_flight(locked_store):
    """$/cancelRequest and notifications/cancelled answer -32800; the rest is unharmed."""
    client, lock, unlock = locked_store
    lock()
    # newConversation blocks on the store; later requests naming "c" queue behind it.
    client.send_many(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "c"}},
            {"id": 2, "method": "getConversation", "params": {"conversationId": "c"}},
            {
                "id": "three",
                "method": "sendUserTurn",
                "params": {"conversationId": "c", "input": text_input("x")},
            },
            {"id": 4, "method": "getConversation", "params": {"conversationId": "c"}},
        ]
    )
    client.notify("$/cancelRequest", {"id": 2})
    client.notify("notifications/cancelled", {"requestId": "three", "reason": "test"})
    # Unknown ids are ignored.
    client.notify("$/cancelRequest", {"id": 12345})
    client.notify("notifications/cancelled", {"requestId": "nope"})
    for msg_id in (2, "three"):
        response = client.response(msg_id)
        assert response["error"]["code"] == ErrorCode.REQUEST_CANCELLED, response
        envelope_of(response, msg_id)
    assert client.result("ping") == {}
    unlock()
    assert client.response(1)["result"]["conversationId"] == "c"
    assert client.response(4)["result"]["conversationId"] == "c"
    # The cancelled turn never started.
    info = client.result("getConversation", {"conversationId": "c"})
    assert info["lastSeq"] == 0 and info["historyLength"] == 0
    assert client.notifications == []
    # Cancelling a request that already completed changes nothing.
    client.notify("$/cancelRequest", {"id": 1})
    _, events = run_turn(client, "c", "still fine")
    assert events[-1]["event"]["lastAgentMessage"] == "still fine"


def test_cancel_remove_waiting_for_a_turn(locked_store):
    """A removeConversation waiting for its turn to end can be cancelled."""
    client, lock, unlock = locked_store
    new(client, "w")
    lock()
    # The turn cannot save its result while the store is locked, so it does not end.
    turn_id = client.result("sendUserTurn", {"conversationId": "w", "input": text_input("x")})[
        "turnId"
    ]
    client.send({"id": "rm", "method": "removeConversation", "params": {"conversationId": "w"}})
    client.notify("notifications/cancelled", {"requestId": "rm"})
    response = client.response("rm")
    assert response["error"]["code"] == ErrorCode.REQUEST_CANCELLED
    unlock()
    events = client.collect_turn("w")
    assert events[0]["event"]["type"] == "turnStarted"
    assert sum(e["event"]["type"] in TERMINAL for e in events) == 1
    assert {e["turnId"] for e in events} == {turn_id}
    assert client.result("ping") == {}


def test_conversation_open_in_another_process(spawn, tmp_path):
    """-32004: two servers share a store; a conversation is open in only one."""
    db = tmp_path / "shared.sqlite3"
    first = spawn("--store", db)
    second = spawn("--store", db)
    new(first, "shared")
    err = second.error("resumeConversation", {"conversationId": "shared"})
    assert err["code"] == ConvmgrCode.CONVERSATION_LOCKED
    assert err["data"]["conversationId"] == "shared"
    assert second.error("newConversation", {"conversationId": "shared"})["code"] in (
        ConvmgrCode.CONVERSATION_EXISTS,
        ConvmgrCode.CONVERSATION_LOCKED,
    )
    # Once the first process lets go, the second may resume it.
    first.result("removeConversation", {"conversationId": "shared"})
    resumed = second.result("resumeConversation", {"conversationId": "shared"})
    assert resumed["conversationId"] == "shared"


def test_cancel_inside_a_batch(locked_store):
    """A cancelled request of a batch is answered -32800 inside the batch's array."""
    client, lock, unlock = locked_store
    lock()
    client.send(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "b"}},
            {"id": 2, "method": "getConversation", "params": {"conversationId": "b"}},
            {"id": 3, "method": "ping"},
        ]
    )
    client.notify("$/cancelRequest", {"id": 2})
    assert client.result("ping", msg_id="after") == {}
    unlock()
    (batch,) = client.batches or [client.read_message()]
    by_id = {r["id"]: r for r in batch}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"]["conversationId"] == "b"
    assert by_id[2]["error"]["code"] == ErrorCode.REQUEST_CANCELLED
    assert by_id[3]["result"] == {}


def test_out_of_range_integers_are_invalid_params(spawn, tmp_path):
    """Integers the SQLite store cannot hold (> 2**63 - 1) are the client's mistake: -32602
    with data.errors, never -32603. An id that large is fine (it is only echoed)."""
    client = spawn("--store", tmp_path / "store.sqlite3")
    huge = 2**70
    response = client.request("ping", msg_id=huge)
    assert response == {"jsonrpc": "2.0", "id": huge, "result": {}}
    new(client, "a")
    for method, params in [
        ("getConversation", {"conversationId": "a", "includeHistory": True, "historyLimit": huge}),
        ("getConversation", {"conversationId": "a", "includeHistory": True, "historyOffset": huge}),
        ("newConversation", {"conversationId": "b", "maxOutputTokens": huge}),
    ]:
        err = client.error(method, params)
        assert "Traceback" not in json.dumps(err)
        assert err["code"] == ErrorCode.INVALID_PARAMS, (params, err)
        assert err["data"]["errors"]


def test_a_method_sent_as_a_notification_is_carried_out_unanswered(server):
    """JSON-RPC 2.0 section 4.1: a notification is executed, and never answered."""
    server.notify("newConversation", {"conversationId": "fire"})
    server.notify("sendUserTurn", {"conversationId": "fire", "input": text_input("and forget")})
    server.notify("getConversation", {"conversationId": "missing"})  # fails quietly
    events = server.collect_turn("fire")
    assert events[-1]["event"] == {"type": "turnComplete", "lastAgentMessage": "and forget"}
    assert server.result("getConversation", {"conversationId": "fire"})["historyLength"] == 2
    server.close_stdin()
    rest = server.read_until_eof()
    assert all("id" not in m or m["id"] is not None for m in rest)
    assert "getConversation failed" in server.stderr()
