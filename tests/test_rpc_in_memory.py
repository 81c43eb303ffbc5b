"""The wire contract (docs/protocol.md) in memory: the real session, no process.

Each test runs `app.serve` — the connection, the convmgr dialect's method table,
a ConversationManager with the echo provider — on an in-memory byte stream and
talks to it as a client process would, in either framing (tests/rpc_memory.py).
Every message read is checked against the JSON-RPC envelope and the wire
models. What only a process shows (real pipes, signals, exit status, stdout
protection) is in test_stdio_protocol.py and test_stdio_ordering.py.
"""

import json
import sqlite3
from collections import defaultdict

import anyio
import pytest
from client import TERMINAL, frame, text_input
from rpc_memory import session

from convmgr import __version__
from convmgr.dialects.convmgr.errors import ConvmgrCode, ErrorCode
from convmgr.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

LONG_TURN = "w " * 1_000_000


@pytest.fixture(params=["ndjson", "lsp"])
def framing(request):
    """Both framings; the server detects them (auto) unless a test says so."""
    return request.param


@pytest.fixture
async def server(framing):
    """A memory-only session in the parametrized framing."""
    async with session(framing=framing) as client:
        yield client


async def new(client, conversation_id=None, **params):
    """newConversation; its result."""
    if conversation_id is not None:
        params["conversationId"] = conversation_id
    return await client.result("newConversation", params)


async def run_turn(client, conversation_id, text):
    """sendUserTurn and the turn's events up to its terminal one (older kept events of
    the conversation are dropped)."""
    client.notifications = [
        n for n in client.notifications if n["params"]["conversationId"] != conversation_id
    ]
    turn_id = (
        await client.result(
            "sendUserTurn", {"conversationId": conversation_id, "input": text_input(text)}
        )
    )["turnId"]
    events = await client.collect_turn(conversation_id)
    assert {e["turnId"] for e in events} == {turn_id}
    return turn_id, events


def assert_consecutive(events, first=1):
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), seqs


def envelope_of(response, msg_id):
    assert response["jsonrpc"] == "2.0"
    assert response["id"] == msg_id and type(response["id"]) is type(msg_id)


async def test_implicit_initialize(server):
    """A first request other than initialize initializes; initialize after it is -32600."""
    await new(server, "a")
    assert (await server.error("initialize", {}))["code"] == ErrorCode.INVALID_REQUEST
    assert (await server.result("getConversation", {"conversationId": "a"}))[
        "conversationId"
    ] == "a"


async def test_shutdown_aborts_running_turns(server):
    await new(server, "idle")
    await new(server, "busy")
    turn_id = (
        await server.result(
            "sendUserTurn", {"conversationId": "busy", "input": text_input("w " * 1_000_000)}
        )
    )["turnId"]
    await server.wait_event("busy", "turnStarted")
    assert await server.result("shutdown") == {}
    # Before the shutdown response: the turn aborted (shutdown), then every conversation ended.
    busy = [e for e in server.events("busy") if e["event"]["type"] != "agentMessageDelta"]
    assert [e["event"] for e in busy] == [
        {"type": "turnAborted", "reason": "shutdown"},
        {"type": "shutdownComplete"},
    ]
    assert busy[0]["turnId"] == turn_id
    assert [e["event"]["type"] for e in server.events("idle")] == ["shutdownComplete"]
    assert (
        await server.error("sendUserTurn", {"conversationId": "busy", "input": text_input("x")})
    )["code"] == ErrorCode.INVALID_REQUEST
    await server.notify("exit")
    await server.expect_eof()
    assert server.ended.is_set()  # the session is over, as the process would exit


async def test_new_and_get_conversation(server):
    made = await new(
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

    generated = await new(server)
    assert generated["conversationId"] and generated["conversationId"] != "conv-1.x_Y"
    assert generated["sessionConfigured"]["conversationId"] == generated["conversationId"]

    info = await server.result("getConversation", {"conversationId": "conv-1.x_Y"})
    assert info["status"] == "idle" and info["loaded"] is True
    assert info["historyLength"] == 0 and info["lastSeq"] == 0
    assert info["metadata"] == {"k": [1, 2]}
    assert info["createdAt"] == configured["createdAt"]
    assert "history" not in info or info["history"] is None
    # Creating a conversation says nothing but its response.
    assert server.notifications == []


async def test_result_with_error_and_result_keys_stays_inside_result(server):
    """A result dict with keys named "error" and "result" is not merged into the envelope."""
    metadata = {"error": 1, "result": 2}
    await new(server, "m", metadata=metadata)
    msg_id = server.next_id()
    response = await server.request("getConversation", {"conversationId": "m"}, msg_id=msg_id)
    assert set(response) == {"jsonrpc", "id", "result"}
    envelope_of(response, msg_id)
    assert response["result"]["metadata"] == metadata
    assert response["result"]["conversationId"] == "m"
    listed = await server.request("listConversations", {})
    assert set(listed) == {"jsonrpc", "id", "result"}
    assert listed["result"]["items"][0]["metadata"] == metadata


async def test_turn_events_and_history(server):
    await new(server, "t")
    text = "  hello   echo\tworld \n"
    turn_id, events = await run_turn(server, "t", text)
    types = [e["event"]["type"] for e in events]
    assert types[0] == "turnStarted"
    assert types[-3:] == ["agentMessage", "tokenUsage", "turnComplete"]
    deltas = [e["event"]["delta"] for e in events if e["event"]["type"] == "agentMessageDelta"]
    assert deltas == ["  hello   ", "echo\t", "world \n"]
    assert events[-3]["event"]["text"] == text
    assert events[-1]["event"]["lastAgentMessage"] == text
    assert_consecutive(events)

    # Several text items are joined with "\n"; empty input gives no delta.
    await server.result(
        "sendUserTurn",
        {"conversationId": "t", "input": [{"type": "text", "text": "a"}, {"text": "b"}]},
    )
    second = await server.collect_turn("t")
    assert second[-1]["event"]["lastAgentMessage"] == "a\nb"
    _, third = await run_turn(server, "t", "")
    assert [e["event"]["type"] for e in third] == [
        "turnStarted",
        "agentMessage",
        "tokenUsage",
        "turnComplete",
    ]
    assert third[1]["event"]["text"] == ""
    assert_consecutive(events + second + third)

    info = await server.result("getConversation", {"conversationId": "t"})
    assert info["historyLength"] == 6
    assert info["lastSeq"] == third[-1]["seq"]
    assert info["status"] == "idle"

    full = await server.result("getConversation", {"conversationId": "t", "includeHistory": True})
    history = full["history"]
    assert [(h["role"], h["content"][0]["text"]) for h in history] == [
        ("user", text),
        ("assistant", text),
        ("user", "a\nb"),
        ("assistant", "a\nb"),
        ("user", ""),
        ("assistant", ""),
    ]
    page = await server.result(
        "getConversation",
        {"conversationId": "t", "includeHistory": True, "historyOffset": 1, "historyLimit": 2},
    )
    assert page["history"] == history[1:3]
    tail = await server.result(
        "getConversation", {"conversationId": "t", "includeHistory": True, "historyOffset": 5}
    )
    assert tail["history"] == history[5:]
    none = await server.result(
        "getConversation",
        {"conversationId": "t", "includeHistory": True, "historyOffset": 99, "historyLimit": 3},
    )
    assert none["history"] == []
    assert turn_id


async def test_fork_by_id_and_by_history(server):
    await new(server, "src", instructions="sys", metadata={"x": 1})
    await run_turn(server, "src", "u1")
    await run_turn(server, "src", "u2")

    whole = await server.result("forkConversation", {"conversationId": "src"})
    assert whole["sessionConfigured"]["forkedFrom"] == "src"
    assert whole["sessionConfigured"]["historyLength"] == 4
    assert whole["sessionConfigured"]["instructions"] == "sys"
    assert whole["conversationId"] not in ("src", None)

    fork = await server.result(
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
    got = await server.result("getConversation", {"conversationId": "f1", "includeHistory": True})
    assert [h["content"][0]["text"] for h in got["history"]] == ["u1", "u1"]
    assert got["forkedFrom"] == "src" and got["metadata"] == {"x": 1}

    emptied = await server.result(
        "forkConversation", {"conversationId": "src", "dropLastMessages": 5}
    )
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
        made = await server.result(
            "forkConversation",
            {
                "history": history,
                "dropLastMessages": drop,
                "overrides": {"conversationId": f"h{drop}"},
            },
        )
        assert made["sessionConfigured"]["forkedFrom"] is None
        assert made["sessionConfigured"]["historyLength"] == length
    kept = await server.result("getConversation", {"conversationId": "h1", "includeHistory": True})
    assert kept["history"] == history[:3]
    kept = await server.result("getConversation", {"conversationId": "h0", "includeHistory": True})
    assert kept["history"] == history
    # The fork is a conversation of its own: it takes turns, the source is unchanged.
    await run_turn(server, "h1", "more")
    assert (await server.result("getConversation", {"conversationId": "src"}))["historyLength"] == 4

    err = await server.error("forkConversation", {})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = await server.error("forkConversation", {"conversationId": "src", "history": history})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = await server.error("forkConversation", {"conversationId": "nope"})
    assert err["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND


async def test_fork_of_a_running_conversation_sees_completed_turns(server):
    await new(server, "run")
    await run_turn(server, "run", "done")
    await server.result(
        "sendUserTurn", {"conversationId": "run", "input": text_input("w " * 1_000_000)}
    )
    await server.wait_event("run", "turnStarted")
    fork = await server.result("forkConversation", {"conversationId": "run"})
    assert fork["sessionConfigured"]["historyLength"] == 2
    forked = await server.result(
        "getConversation", {"conversationId": fork["conversationId"], "includeHistory": True}
    )
    assert [h["content"][0]["text"] for h in forked["history"]] == ["done", "done"]
    assert forked["status"] == "idle"
    assert (await server.result("getConversation", {"conversationId": "run"}))[
        "status"
    ] == "running"
    await server.result("interruptConversation", {"conversationId": "run"})
    await server.wait_event("run", "turnAborted")


async def test_interrupt(server):
    await new(server, "i")
    assert await server.result("interruptConversation", {"conversationId": "i"}) == {
        "interrupted": False
    }
    turn_id = (
        await server.result(
            "sendUserTurn", {"conversationId": "i", "input": text_input("w " * 1_000_000)}
        )
    )["turnId"]
    await server.wait_event("i", "turnStarted")
    assert await server.result("interruptConversation", {"conversationId": "i"}) == {
        "interrupted": True
    }
    aborted = await server.wait_event("i", "turnAborted")
    assert aborted["turnId"] == turn_id
    assert aborted["event"]["reason"] == "interrupted"
    # The conversation is usable again.
    _, events = await run_turn(server, "i", "again")
    assert events[-1]["event"] == {
        "type": "turnComplete",
        "lastAgentMessage": "again",
        "finishReason": "stop",
    }
    assert (await server.result("getConversation", {"conversationId": "i"}))["status"] == "idle"


async def test_list_conversations_paging(server):
    ids = [f"l{i}" for i in range(7)]
    for cid in ids:
        await new(server, cid)
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        page = await server.result("listConversations", params)
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

    everything = await server.result("listConversations", {"limit": 500})
    assert [i["conversationId"] for i in everything["items"]] == [i["conversationId"] for i in seen]
    assert everything["nextCursor"] is None
    # A turn makes a conversation the newest.
    await run_turn(server, "l0", "bump")
    top = await server.result("listConversations", {"limit": 1})
    assert top["items"][0]["conversationId"] == "l0"
    assert top["nextCursor"] is not None

    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": "!!not-a-cursor!!"}):
        assert (await server.error("listConversations", bad))["code"] == ErrorCode.INVALID_PARAMS


async def test_remove_and_resume(server):
    await new(server, "r", instructions="keep me")
    await run_turn(server, "r", "hi there")
    assert await server.result("removeConversation", {"conversationId": "r"}) == {"removed": True}
    gone = server.events("r")
    assert [e["event"]["type"] for e in gone] == ["shutdownComplete"]
    assert gone[0]["turnId"] is None

    stored = await server.result("getConversation", {"conversationId": "r"})
    assert stored["loaded"] is False and stored["historyLength"] == 2
    assert (await server.error("sendUserTurn", {"conversationId": "r", "input": text_input("x")}))[
        "code"
    ] == ConvmgrCode.CONVERSATION_NOT_FOUND
    assert await server.result("removeConversation", {"conversationId": "r"}) == {"removed": False}

    resumed = await server.result("resumeConversation", {"conversationId": "r"})
    assert resumed["conversationId"] == "r"
    assert resumed["sessionConfigured"]["historyLength"] == 2
    assert resumed["sessionConfigured"]["instructions"] == "keep me"
    # Resuming a loaded conversation answers with it as it is.
    again = await server.result("resumeConversation", {"conversationId": "r"})
    assert again["sessionConfigured"] == resumed["sessionConfigured"]
    assert (await server.result("getConversation", {"conversationId": "r"}))["loaded"] is True
    _, events = await run_turn(server, "r", "back")
    assert events[-1]["event"]["lastAgentMessage"] == "back"
    history = await server.result(
        "getConversation", {"conversationId": "r", "includeHistory": True}
    )
    assert [h["content"][0]["text"] for h in history["history"]] == [
        "hi there",
        "hi there",
        "back",
        "back",
    ]

    # deleteHistory forgets it for good.
    assert await server.result(
        "removeConversation", {"conversationId": "r", "deleteHistory": True}
    ) == {"removed": True}
    assert (await server.error("getConversation", {"conversationId": "r"}))[
        "code"
    ] == ConvmgrCode.CONVERSATION_NOT_FOUND
    assert (await server.error("resumeConversation", {"conversationId": "r"}))[
        "code"
    ] == ConvmgrCode.CONVERSATION_NOT_FOUND
    assert await server.result("removeConversation", {"conversationId": "unknown"}) == {
        "removed": False
    }


async def test_seq_keeps_growing_across_remove_and_resume(server):
    """docs/protocol.md: seq grows by exactly 1 per notification of a conversation, and
    a resumed conversation is the same conversation: its shutdownComplete counts."""
    await new(server, "s")
    _, first = await run_turn(server, "s", "one")
    await server.result("removeConversation", {"conversationId": "s"})
    (closed,) = server.events("s")
    server.notifications.clear()
    assert closed["seq"] == first[-1]["seq"] + 1
    stored = await server.result("getConversation", {"conversationId": "s"})
    assert stored["lastSeq"] == closed["seq"]
    await server.result("resumeConversation", {"conversationId": "s"})
    _, second = await run_turn(server, "s", "two")
    assert second[0]["seq"] == closed["seq"] + 1


async def test_remove_running_turn(server):
    await new(server, "rm")
    turn_id = (
        await server.result(
            "sendUserTurn", {"conversationId": "rm", "input": text_input("w " * 1_000_000)}
        )
    )["turnId"]
    await server.wait_event("rm", "turnStarted")
    assert await server.result("removeConversation", {"conversationId": "rm"}) == {"removed": True}
    # Everything of "rm" after turnStarted: deltas, then turnAborted, then shutdownComplete.
    tail = [e for e in server.events("rm") if e["event"]["type"] != "agentMessageDelta"]
    assert [e["event"]["type"] for e in tail] == ["turnAborted", "shutdownComplete"]
    assert tail[0]["event"]["reason"] == "removed" and tail[0]["turnId"] == turn_id
    assert tail[1]["turnId"] is None
    assert_consecutive([e for e in server.events("rm")], server.events("rm")[0]["seq"])
    server.notifications.clear()
    # Nothing of "rm" follows its shutdownComplete.
    assert await server.result("ping") == {}
    assert server.events("rm") == []
    # Its history stays (resumable); it is no longer loaded.
    assert (await server.result("getConversation", {"conversationId": "rm"}))["loaded"] is False


async def test_error_codes(server):
    err = await server.error("noSuchMethod", {})
    assert err["code"] == ErrorCode.METHOD_NOT_FOUND

    err = await server.error("newConversation", {"conversationId": ".hidden", "temperature": 7})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    locs = {tuple(e["loc"]) for e in err["data"]["errors"]}
    assert ("conversationId",) in locs and ("temperature",) in locs
    for bad in (
        {"conversationId": ""},
        {"conversationId": "x" * 129},
        {"conversationId": "a/b"},
        {"provider": "no-such-provider"},
    ):
        assert (await server.error("newConversation", bad))["code"] == ErrorCode.INVALID_PARAMS
    err = await server.error("sendUserTurn", {"conversationId": "x"})  # input missing
    assert err["code"] == ErrorCode.INVALID_PARAMS and err["data"]["errors"]
    err = await server.error("getConversation", ["positional"])
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = await server.error("getConversation")  # params left out
    assert err["code"] == ErrorCode.INVALID_PARAMS and err["data"]["errors"]
    # An unknown notification is ignored: no answer at all.
    await server.notify("no/such/notification", {"x": 1})
    assert await server.result("ping") == {}
    assert server.notifications == []

    for method in ("getConversation", "sendUserTurn", "interruptConversation"):
        params = {"conversationId": "ghost", "input": text_input("x")}
        err = await server.error(method, params)
        assert err["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND, method
        assert err["data"]["conversationId"] == "ghost"

    await new(server, "dup")
    err = await server.error("newConversation", {"conversationId": "dup"})
    assert err["code"] == ConvmgrCode.CONVERSATION_EXISTS
    assert err["data"]["conversationId"] == "dup"
    err = await server.error(
        "forkConversation", {"conversationId": "dup", "overrides": {"conversationId": "dup"}}
    )
    assert err["code"] == ConvmgrCode.CONVERSATION_EXISTS

    await server.result(
        "sendUserTurn", {"conversationId": "dup", "input": text_input("w " * 1_000_000)}
    )
    err = await server.error(
        "sendUserTurn", {"conversationId": "dup", "input": text_input("again")}
    )
    assert err["code"] == ConvmgrCode.CONVERSATION_BUSY
    assert (await server.result("getConversation", {"conversationId": "dup"}))[
        "status"
    ] == "running"
    assert (await server.result("interruptConversation", {"conversationId": "dup"}))["interrupted"]
    assert (await server.wait_event("dup", "turnAborted"))["event"]["reason"] == "interrupted"

    # Messages never carry a traceback.
    assert "Traceback" not in json.dumps(err)


async def test_max_conversations(framing):
    async with session(framing=framing, max_conversations=2) as client:
        await new(client, "a")
        await new(client, "b")
        err = await client.error("newConversation", {"conversationId": "c"})
        assert err["code"] == ConvmgrCode.OVERLOADED
        err = await client.error("forkConversation", {"conversationId": "a"})
        assert err["code"] == ConvmgrCode.OVERLOADED
        await client.result("removeConversation", {"conversationId": "a"})
        await new(client, "c")
        err = await client.error("resumeConversation", {"conversationId": "a"})
        assert err["code"] == ConvmgrCode.OVERLOADED


async def test_invalid_requests(server):
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
        await server.send(message)
        response = await server.read_message()
        assert response.get("error", {}).get("code") == ErrorCode.INVALID_REQUEST, message
        envelope_of(response, msg_id)
    assert await server.result("ping") == {}


async def test_parse_error_then_good_request(server, framing):
    if framing == "ndjson":
        garbage = [b"{not json", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', b"\xff\xfe"]
    else:
        garbage = [b"{not json", b'{"id": 1,', b"\xff\xfe", b""]
    for body in garbage:
        await server.send_raw(frame(body, framing))
        response = await server.read_message()
        assert response["error"]["code"] == ErrorCode.PARSE_ERROR, body
        envelope_of(response, None)
        assert await server.result("ping") == {}
    if framing == "lsp":
        # A broken header block is a parse error too; the next frame is read as usual.
        await server.send_raw(b"Content-Type: x\r\n\r\n")
        assert (await server.read_message())["error"]["code"] == ErrorCode.PARSE_ERROR
        await server.send_raw(b"Content-Length: abc\r\n\r\n")
        assert (await server.read_message())["error"]["code"] == ErrorCode.PARSE_ERROR
        assert await server.result("ping") == {}
    else:
        # Blank lines are no messages.
        await server.send_raw(b"\n\r\n   \n")
        assert await server.result("ping") == {}


async def test_batch(server):
    await new(server, "b")
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
    await server.send(batch)
    responses = await server.read_message()
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
    await server.send([{"jsonrpc": "2.0", "method": "initialized"}, {"method": "initialized"}])
    msg_id = server.next_id()
    await server.send({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    nxt = await server.read_message()
    assert isinstance(nxt, dict) and nxt["id"] == msg_id

    # An empty array: one -32600, not an array.
    await server.send([])
    empty = await server.read_message()
    assert isinstance(empty, dict)
    assert empty["error"]["code"] == ErrorCode.INVALID_REQUEST
    envelope_of(empty, None)

    # A batch of one invalid element is answered with an array of one.
    await server.send([1])
    single = await server.read_message()
    assert isinstance(single, list) and len(single) == 1
    assert single[0]["error"]["code"] == ErrorCode.INVALID_REQUEST

    # A batch's requests take turns like any others: a turn, answered before it starts.
    await server.send(
        [
            {"id": 10, "method": "newConversation", "params": {"conversationId": "bt"}},
            {
                "id": 11,
                "method": "sendUserTurn",
                "params": {"conversationId": "bt", "input": text_input("batched turn")},
            },
        ]
    )
    answer = await server.read_message()
    assert isinstance(answer, list)
    assert sorted(r["id"] for r in answer) == [10, 11]
    assert all("result" in r for r in answer)
    events = await server.collect_turn("bt")
    assert events[0]["event"]["type"] == "turnStarted"
    assert events[-1]["event"]["lastAgentMessage"] == "batched turn"


async def test_small_max_message_bytes(framing):
    async with session(framing=framing, max_message_bytes=1000) as client:
        assert await client.result("ping") == {}
        body = json.dumps({"id": 1, "method": "ping", "params": {"pad": "a" * 2000}}).encode()
        await client.send_raw(frame(body, framing) * 3)
        for _ in range(3):
            response = await client.read_message()
            assert response["error"]["code"] == ErrorCode.INVALID_REQUEST
            assert "too large" in response["error"]["message"]
            assert response["error"]["data"] == {"limit": 1000, "size": len(body)}
        fits = {"id": 2, "method": "ping", "params": {"pad": "a" * 900}}
        assert len(json.dumps(fits)) < 1000
        await client.send(fits)
        assert await client.read_message() == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_ids_null_string_integer_and_no_jsonrpc(server):
    for msg_id in (None, "req-1", 0, -3, 2**53, "", "1"):
        response = await server.request("ping", msg_id=msg_id)
        envelope_of(response, msg_id)
        assert response["result"] == {}
    # Deferred work keeps the id too.
    for msg_id in (None, "n-1", 77):
        response = await server.request("newConversation", {}, msg_id=msg_id)
        envelope_of(response, msg_id)
        assert response["result"]["conversationId"]
    # No "jsonrpc" (Codex-style): accepted, answered with "jsonrpc": "2.0".
    await server.send({"id": 9, "method": "newConversation", "params": {"conversationId": "nj"}})
    response = await server.read_message()
    assert response["jsonrpc"] == "2.0" and response["id"] == 9
    assert response["result"]["conversationId"] == "nj"
    await server.send({"method": "initialized"})
    await server.send({"id": "x", "method": "ping"})
    assert await server.read_message() == {"jsonrpc": "2.0", "id": "x", "result": {}}


async def test_response_shaped_message_is_ignored(server):
    await server.send({"jsonrpc": "2.0", "id": 99, "result": {"anything": 1}})
    await server.send({"jsonrpc": "2.0", "id": "q", "error": {"code": -1, "message": "no"}})
    await server.send({"id": 98, "result": None})
    msg_id = server.next_id()
    await server.send({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    assert await server.read_message() == {"jsonrpc": "2.0", "id": msg_id, "result": {}}


@pytest.fixture
async def locked_store(framing, tmp_path):
    """A session on a SQLite store, and a function that takes the store's write lock."""
    db = tmp_path / "store.sqlite3"
    async with session(SqliteStore(db), framing=framing) as client:
        assert (await client.result("initialize"))["capabilities"]["persistentStore"] is True
        holder = sqlite3.connect(db, isolation_level=None, timeout=0)

        def lock():
            holder.execute("BEGIN IMMEDIATE")

        def unlock():
            holder.execute("ROLLBACK")

        yield client, lock, unlock
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


async def test_cancel_requests_queued_behind_one_in_flight(locked_store):
    """$/cancelRequest and notifications/cancelled answer -32800; the rest is unharmed."""
    client, lock, unlock = locked_store
    lock()
    # newConversation blocks on the store; later requests naming "c" queue behind it.
    await client.send_many(
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
    await client.notify("$/cancelRequest", {"id": 2})
    await client.notify("notifications/cancelled", {"requestId": "three", "reason": "test"})
    # Unknown ids are ignored.
    await client.notify("$/cancelRequest", {"id": 12345})
    await client.notify("notifications/cancelled", {"requestId": "nope"})
    for msg_id in (2, "three"):
        response = await client.response(msg_id)
        assert response["error"]["code"] == ErrorCode.REQUEST_CANCELLED, response
        envelope_of(response, msg_id)
    assert await client.result("ping") == {}
    unlock()
    assert (await client.response(1))["result"]["conversationId"] == "c"
    assert (await client.response(4))["result"]["conversationId"] == "c"
    # The cancelled turn never started.
    info = await client.result("getConversation", {"conversationId": "c"})
    assert info["lastSeq"] == 0 and info["historyLength"] == 0
    assert client.notifications == []
    # Cancelling a request that already completed changes nothing.
    await client.notify("$/cancelRequest", {"id": 1})
    _, events = await run_turn(client, "c", "still fine")
    assert events[-1]["event"]["lastAgentMessage"] == "still fine"


async def test_cancel_remove_waiting_for_a_turn(locked_store):
    """A removeConversation waiting for its turn to end can be cancelled."""
    client, lock, unlock = locked_store
    await new(client, "w")
    lock()
    # The turn cannot save its result while the store is locked, so it does not end.
    turn_id = (
        await client.result("sendUserTurn", {"conversationId": "w", "input": text_input("x")})
    )["turnId"]
    await client.send(
        {"id": "rm", "method": "removeConversation", "params": {"conversationId": "w"}}
    )
    await client.notify("notifications/cancelled", {"requestId": "rm"})
    response = await client.response("rm")
    assert response["error"]["code"] == ErrorCode.REQUEST_CANCELLED
    unlock()
    events = await client.collect_turn("w")
    assert events[0]["event"]["type"] == "turnStarted"
    assert sum(e["event"]["type"] in TERMINAL for e in events) == 1
    assert {e["turnId"] for e in events} == {turn_id}
    assert await client.result("ping") == {}


async def test_cancel_inside_a_batch(locked_store):
    """A cancelled request of a batch is answered -32800 inside the batch's array."""
    client, lock, unlock = locked_store
    lock()
    await client.send(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "b"}},
            {"id": 2, "method": "getConversation", "params": {"conversationId": "b"}},
            {"id": 3, "method": "ping"},
        ]
    )
    await client.notify("$/cancelRequest", {"id": 2})
    assert await client.result("ping", msg_id="after") == {}
    unlock()
    (batch,) = client.batches or [await client.read_message()]
    by_id = {r["id"]: r for r in batch}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"]["conversationId"] == "b"
    assert by_id[2]["error"]["code"] == ErrorCode.REQUEST_CANCELLED
    assert by_id[3]["result"] == {}


async def test_out_of_range_integers_are_invalid_params(tmp_path):
    """Integers the SQLite store cannot hold (> 2**63 - 1) are the client's mistake: -32602
    with data.errors, never -32603. An id that large is fine (it is only echoed)."""
    async with session(SqliteStore(tmp_path / "store.sqlite3")) as client:
        huge = 2**70
        response = await client.request("ping", msg_id=huge)
        assert response == {"jsonrpc": "2.0", "id": huge, "result": {}}
        await new(client, "a")
        for method, params in [
            (
                "getConversation",
                {"conversationId": "a", "includeHistory": True, "historyLimit": huge},
            ),
            (
                "getConversation",
                {"conversationId": "a", "includeHistory": True, "historyOffset": huge},
            ),
            ("newConversation", {"conversationId": "b", "maxOutputTokens": huge}),
        ]:
            err = await client.error(method, params)
            assert "Traceback" not in json.dumps(err)
            assert err["code"] == ErrorCode.INVALID_PARAMS, (params, err)
            assert err["data"]["errors"]


async def test_a_method_sent_as_a_notification_is_carried_out_unanswered(server, caplog):
    """JSON-RPC 2.0 section 4.1: a notification is executed, and never answered."""
    await server.notify("newConversation", {"conversationId": "fire"})
    await server.notify(
        "sendUserTurn", {"conversationId": "fire", "input": text_input("and forget")}
    )
    await server.notify("getConversation", {"conversationId": "missing"})  # fails quietly
    events = await server.collect_turn("fire")
    assert events[-1]["event"] == {
        "type": "turnComplete",
        "lastAgentMessage": "and forget",
        "finishReason": "stop",
    }
    assert (await server.result("getConversation", {"conversationId": "fire"}))[
        "historyLength"
    ] == 2
    server.close_input()
    rest = await server.read_until_eof()
    assert all("id" not in m or m["id"] is not None for m in rest)
    assert "getConversation failed" in caplog.text


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}.{j}" for j in range(count))


def assert_cut_short(events: list[dict]) -> None:
    """The turn's deltas are a strict prefix of LONG_TURN and it never completed:
    it was stopped while it still had words to send, not after it ran out."""
    types = [e["event"]["type"] for e in events]
    assert "turnComplete" not in types and "agentMessage" not in types, types[-3:]
    streamed = "".join(e["event"]["delta"] for e in events if "delta" in e["event"])
    assert len(streamed) < len(LONG_TURN), "the whole turn was streamed first"
    assert LONG_TURN.startswith(streamed)


async def test_interrupt_long_turn_promptly(client):
    await client.result("newConversation", {"conversationId": "big"})
    turn_id = (
        await client.result(
            "sendUserTurn", {"conversationId": "big", "input": text_input(LONG_TURN)}
        )
    )["turnId"]
    await client.wait_event("big", "turnStarted")
    assert await client.result("interruptConversation", {"conversationId": "big"}) == {
        "interrupted": True
    }
    # Every event after turnStarted, up to the terminal one (a failure guard only).
    events = await client.collect_turn("big", timeout=60)
    aborted = events[-1]
    assert aborted["turnId"] == turn_id and aborted["event"]["reason"] == "interrupted"
    # Promptly: the interrupt landed while the turn still had words to send.
    assert_cut_short(events)
    # A second interrupt finds nothing to interrupt; nothing of the turn follows.
    assert await client.result("interruptConversation", {"conversationId": "big"}) == {
        "interrupted": False
    }
    assert [e for e in client.events("big") if e["turnId"] == turn_id] == []
    info = await client.result("getConversation", {"conversationId": "big"})
    assert info["status"] == "idle" and info["lastSeq"] == aborted["seq"]


async def test_pipelined_turn_busy_then_interrupt(client):
    """A second turn pipelined behind a running one is -32002; an interrupt pipelined
    before the turn's first event still aborts it: turnStarted, then turnAborted."""
    await client.send_many(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "q"}},
            {
                "id": 2,
                "method": "sendUserTurn",
                "params": {"conversationId": "q", "input": text_input(LONG_TURN)},
            },
            {
                "id": 3,
                "method": "sendUserTurn",
                "params": {"conversationId": "q", "input": text_input("second")},
            },
            {"id": 4, "method": "interruptConversation", "params": {"conversationId": "q"}},
        ]
    )
    assert (await client.response(1))["result"]["conversationId"] == "q"
    turn_id = (await client.response(2))["result"]["turnId"]
    busy = await client.response(3)
    assert busy["error"]["code"] == ConvmgrCode.CONVERSATION_BUSY
    assert busy["error"]["data"] == {"conversationId": "q"}
    assert (await client.response(4))["result"] == {"interrupted": True}
    events = await client.collect_turn("q")
    assert events[0]["event"]["type"] == "turnStarted" and events[0]["seq"] == 1
    assert events[-1]["event"] == {"type": "turnAborted", "reason": "interrupted"}
    assert {e["turnId"] for e in events} == {turn_id}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # Now the conversation takes the next turn.
    await client.result("sendUserTurn", {"conversationId": "q", "input": text_input("second")})
    assert (await client.collect_turn("q"))[-1]["event"]["lastAgentMessage"] == "second"


async def test_remove_pipelined_behind_a_running_turn(client):
    """newConversation, sendUserTurn and removeConversation written at once:
    turnStarted, turnAborted (removed), then shutdownComplete as the last event."""
    await client.send_many(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "gone"}},
            {
                "id": 2,
                "method": "sendUserTurn",
                "params": {"conversationId": "gone", "input": text_input(LONG_TURN)},
            },
            {"id": 3, "method": "removeConversation", "params": {"conversationId": "gone"}},
        ]
    )
    created = await client.response(1)
    assert created["result"]["conversationId"] == "gone"
    turn_id = (await client.response(2))["result"]["turnId"]
    assert (await client.response(3))["result"] == {"removed": True}
    assert await client.result("ping") == {}
    evs = client.events("gone")
    types = [e["event"]["type"] for e in evs if e["event"]["type"] != "agentMessageDelta"]
    assert types == ["turnStarted", "turnAborted", "shutdownComplete"]
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    aborted = next(e for e in evs if e["event"]["type"] == "turnAborted")
    assert aborted["event"]["reason"] == "removed" and aborted["turnId"] == turn_id
    assert evs[-1]["turnId"] is None
    assert (
        await client.error("sendUserTurn", {"conversationId": "gone", "input": text_input("x")})
    )["code"] == ConvmgrCode.CONVERSATION_NOT_FOUND


@pytest.fixture
async def client():
    """A memory-only session in ndjson."""
    async with session() as memory_client:
        yield memory_client


# --- written for this file --------------------------------------------------------------


async def test_initialize(server):
    init = await server.result(
        "initialize",
        {
            "protocolVersion": "1",
            "clientInfo": {"name": "tests", "version": "0"},
            "capabilities": {},
        },
    )
    assert init == {
        "protocolVersion": "1",
        "serverInfo": {"name": "convmgr", "version": __version__},
        "capabilities": {
            "framings": ["ndjson", "lsp"],
            "batches": True,
            "cancellation": ["$/cancelRequest", "notifications/cancelled"],
            "persistentStore": False,
            "tools": True,
            "serverRequests": ["tool/call", "approval/request"],
        },
        "providers": [{"name": "echo", "kind": "echo", "defaultModel": "echo"}],
    }
    await server.notify("initialized", {})
    assert await server.result("ping") == {}
    assert server.notifications == []  # `initialized` is answered with nothing
    assert (await server.error("initialize", {}))["code"] == ErrorCode.INVALID_REQUEST


async def test_initialize_params_outside_the_fast_path_are_validated(client):
    err = await client.error("initialize", {"clientInfo": {"version": 2}})
    assert err["code"] == ErrorCode.INVALID_PARAMS
    assert {tuple(e["loc"]) for e in err["data"]["errors"]} >= {("clientInfo", "name")}
    # A failed initialize did not initialize: the next one is answered.
    made = await client.result("initialize", {"protocolVersion": "1", "extra": {"k": [1]}})
    assert made["protocolVersion"] == "1"


async def test_pipelined_conversations_answer_before_their_events(framing):
    """The ordering rules of docs/protocol.md with everything written at once: each
    creation and turn response before the conversation's first event, seq from 1 without
    gaps, one terminal event per turn, the reply equal to the input."""
    n = 60
    async with session(framing=framing) as client:
        texts = {f"p{i}": words(f"p{i}", 50) for i in range(n)}
        requests = []
        for i, (cid, text) in enumerate(texts.items()):
            requests.append(
                {"id": 2 * i, "method": "newConversation", "params": {"conversationId": cid}}
            )
            requests.append(
                {
                    "id": 2 * i + 1,
                    "method": "sendUserTurn",
                    "params": {"conversationId": cid, "input": text_input(text)},
                }
            )
        await client.send_many(requests)
        created_at: dict[str, int] = {}
        turn_answered_at: dict[str, int] = {}
        first_event_at: dict[str, int] = {}
        events: dict[str, list] = defaultdict(list)
        answered = terminals = index = 0
        while answered < 2 * n or terminals < n:
            msg = await client.read_message()
            index += 1
            if "method" in msg:
                p = msg["params"]
                first_event_at.setdefault(p["conversationId"], index)
                events[p["conversationId"]].append(p)
                terminals += p["event"]["type"] in TERMINAL
                continue
            answered += 1
            assert "result" in msg, msg
            i, is_turn = divmod(msg["id"], 2)
            (turn_answered_at if is_turn else created_at)[f"p{i}"] = index
        for cid, text in texts.items():
            evs = events[cid]
            assert created_at[cid] < turn_answered_at[cid] < first_event_at[cid], cid
            assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), cid
            types = [e["event"]["type"] for e in evs]
            assert types[0] == "turnStarted" and types[-1] == "turnComplete", cid
            assert sum(t in TERMINAL for t in types) == 1
            assert evs[-1]["event"]["lastAgentMessage"] == text
        assert await client.result("ping") == {}
        assert client.notifications == []


async def test_end_of_input_drains_running_turns(framing):
    """As `printf ... | convmgr`: every answer and every turn's events, then the end."""
    async with session(framing=framing) as client:
        texts = {f"e{i}": words(f"e{i}", 300) for i in range(5)}
        requests = []
        for cid, text in texts.items():
            requests.append(
                {"id": f"new-{cid}", "method": "newConversation", "params": {"conversationId": cid}}
            )
            requests.append(
                {
                    "id": f"turn-{cid}",
                    "method": "sendUserTurn",
                    "params": {"conversationId": cid, "input": text_input(text)},
                }
            )
        await client.send_many(requests)
        client.close_input()
        messages = await client.read_until_eof()
        assert client.ended.is_set()
    assert {m["id"] for m in messages if "id" in m} == {r["id"] for r in requests}
    for cid, text in texts.items():
        evs = [
            m["params"] for m in messages if "method" in m and m["params"]["conversationId"] == cid
        ]
        types = [e["event"]["type"] for e in evs]
        assert types[-2:] == ["turnComplete", "shutdownComplete"], types[-3:]
        assert evs[-2]["event"]["lastAgentMessage"] == text


async def test_a_client_that_stops_reading_ends_the_session(client):
    """Its output has nowhere to go: the session stops as on a signal, turns aborted."""
    await new(client, "r")
    await client.result("sendUserTurn", {"conversationId": "r", "input": text_input(LONG_TURN)})
    await client.wait_event("r", "turnStarted")
    client.stop_reading()
    with anyio.fail_after(20):  # a hang guard only
        await client.ended.wait()


async def test_notifications_of_a_cancelled_request_or_unknown_ids_are_never_answered(client):
    for params in ({"id": None}, {"id": [1]}, {}, None, {"id": 12345}):
        await client.notify("$/cancelRequest", params)
    for params in ({"requestId": 1.5}, {"id": 1}, {"requestId": "nope"}):
        await client.notify("notifications/cancelled", params)
    assert await client.result("ping") == {}
    assert client.notifications == [] and client.responses == {}


async def test_shutdown_comes_after_the_requests_read_before_it():
    """newConversation, sendUserTurn and shutdown pipelined: the first two are applied first."""
    async with session() as client:
        await client.send_many(
            [
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "newConversation",
                    "params": {"conversationId": "d"},
                },
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "sendUserTurn",
                    "params": {"conversationId": "d", "input": text_input("hello there")},
                },
                {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
            ]
        )
        assert "result" in await client.response(1)
        assert "result" in await client.response(2)
        assert (await client.response(3))["result"] == {}
        events = [e["event"]["type"] for e in client.events("d")]
        assert events[0] == "turnStarted" and events[-1] == "shutdownComplete"


async def test_a_batch_response_never_exceeds_the_message_limit():
    limit = 4096
    async with session(max_message_bytes=limit) as client:
        await client.result(
            "newConversation", {"conversationId": "m", "metadata": {"blob": "x" * 3000}}
        )
        get = {"method": "getConversation", "params": {"conversationId": "m"}}
        batch = [{"jsonrpc": "2.0", "id": n, **get} for n in (1, 2)]
        await client.send(batch)
        reply = await client.read_message()
        assert isinstance(reply, list) and len(reply) == 2
        assert len(json.dumps(reply, separators=(",", ":"))) <= limit
        errors = [r for r in reply if "error" in r]
        assert len(errors) == 1 and errors[0]["error"]["code"] == ConvmgrCode.OVERLOADED
        (kept,) = (r for r in reply if "result" in r)
        assert kept["result"]["metadata"] == {"blob": "x" * 3000}


@pytest.mark.parametrize(
    ("method", "params", "loc"),
    [
        ("newConversation", {"provider": "nope"}, ["provider"]),
        ("listConversations", {"cursor": "not-a-cursor"}, ["cursor"]),
        ("forkConversation", {}, []),
        ("ping", [1], []),
    ],
    ids=["unknown-provider", "bad-cursor", "fork-needs-a-source", "positional-params"],
)
async def test_every_invalid_params_error_lists_its_errors(method, params, loc):
    async with session() as client:
        error = await client.error(method, params)
        assert error["code"] == ErrorCode.INVALID_PARAMS
        (entry,) = error["data"]["errors"]
        assert entry["loc"] == loc and entry["msg"] == error["message"]
