"""Client tools through the real process, in both framings (docs/protocol.md).

tests/test_tools_client.py covers the tool rules in memory; these keep to what
only a process shows: `tool/call` requests and the server's `$/cancelRequest`
written to stdout in the session's framing, the client's answers read from
stdin in that framing, a late answer logged and ignored, `--tool-timeout`, the
end of stdin and SIGTERM while a call is pending (exit status 0), and SIGKILL
while the client holds a call, with the store. Every message read is checked
against the wire models (tests/client.py). Nothing waits for time to pass: each
step waits for the message it needs.
"""

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from client import Client, text_input

Message = dict[str, Any]

LOOKUP = {"name": "lookup", "description": "Looks up a key.", "inputSchema": {"type": "object"}}

both_framings = pytest.mark.parametrize("framing", ["ndjson", "lsp"])


def start(spawn: Any, framing: str, *args: str) -> Client:
    """A `--no-store` server spoken to in `framing` (the server detects it)."""
    return spawn("--no-store", *args, framing=framing)


def text_result(text: str, is_error: bool = False) -> Message:
    """An MCP CallToolResult with one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def answer(request: Message, result: Any) -> Message:
    """The client's response to a server request."""
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def new(client: Client, cid: str) -> None:
    """newConversation with the client tool `lookup`."""
    configured = client.result("newConversation", {"conversationId": cid, "tools": [LOOKUP]})
    assert configured["sessionConfigured"]["tools"] == [LOOKUP]


def send_turn(client: Client, cid: str, text: str) -> str:
    """sendUserTurn; its turnId."""
    result = client.result("sendUserTurn", {"conversationId": cid, "input": text_input(text)})
    return str(result["turnId"])


def tool_call(client: Client) -> Message:
    """The next server message, which must be a `tool/call` request."""
    request = client.server_request()
    assert request["method"] == "tool/call", request
    return request


def completed_with(events: list[Message]) -> str:
    """The turn's lastAgentMessage; its last event must be turnComplete."""
    last = events[-1]["event"]
    assert last["type"] == "turnComplete", last
    return str(last["lastAgentMessage"])


def of_type(events: list[Message], kind: str) -> list[Message]:
    """The events of one type, in order."""
    return [e["event"] for e in events if e["event"]["type"] == kind]


def history(client: Client, cid: str) -> list[Message]:
    """The conversation's history."""
    got = client.result("getConversation", {"conversationId": cid, "includeHistory": True})
    return list(got["history"])


def outputs(client: Client, cid: str) -> list[tuple[str, str, bool]]:
    """(callId, output, isError) of each functionCallOutput in the history, in order."""
    return [
        (i["callId"], i["output"], i["isError"])
        for i in history(client, cid)
        if i["type"] == "functionCallOutput"
    ]


def cancel_of(request: Message) -> Message:
    """The server's `$/cancelRequest` for one of its requests."""
    return {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": request["id"]}}


def aborted_result(call_id: str) -> Message:
    """The toolResult of a call cut short by the end of its turn."""
    return {
        "type": "toolResult",
        "callId": call_id,
        "content": [{"type": "text", "text": "aborted"}],
        "isError": True,
    }


def stop_while_held(client: Client, cid: str, method: str, expected: Message) -> Message:
    """A one-call turn whose call the client holds, stopped by `method`; the held request.

    The server answers `expected`, cancels the request and ends the turn aborted.
    """
    send_turn(client, cid, "/call lookup {}")
    held = tool_call(client)
    assert client.result(method, {"conversationId": cid}) == expected
    assert client.server_request() == cancel_of(held)
    events = client.collect_turn(cid)
    assert of_type(events, "toolResult") == [aborted_result(held["params"]["callId"])]
    reason = "interrupted" if method == "interruptConversation" else "removed"
    assert events[-1]["event"] == {"type": "turnAborted", "reason": reason}
    return held


def end_cleanly(client: Client) -> list[Any]:
    """End of input; every message still to come; exit status 0."""
    client.close_stdin()
    rest = client.read_until_eof()
    assert client.wait() == 0, client.stderr()
    return rest


@both_framings
def test_calls_are_answered_over_the_pipes_in_any_order(spawn: Any, framing: str) -> None:
    """One call; three at once answered last to first; an error answer."""
    client = start(spawn, framing)
    new(client, "c")

    turn_id = send_turn(client, "c", '/call lookup {"key": "k0"}')
    request = tool_call(client)
    assert request["id"] == "s1"
    assert request["params"] == {
        "conversationId": "c",
        "turnId": turn_id,
        "callId": "call_1_1",
        "name": "lookup",
        "arguments": {"key": "k0"},
    }
    client.send(answer(request, text_result("value of k0")))
    events = client.collect_turn("c")
    assert [r["content"] for r in of_type(events, "toolResult")] == [
        [{"type": "text", "text": "value of k0"}]
    ]
    assert completed_with(events) == "value of k0"

    # Three calls in one model reply: all three are asked for before any answer.
    send_turn(client, "c", "\n".join(f'/call lookup {{"key": "k{n}"}}' for n in (1, 2, 3)))
    requests = [tool_call(client) for _ in range(3)]
    assert [r["id"] for r in requests] == ["s2", "s3", "s4"]
    assert [r["params"]["callId"] for r in requests] == ["call_2_1", "call_2_2", "call_2_3"]
    # Answered last to first, all in one write.
    client.send_many(
        answer(r, text_result(f"value of {r['params']['arguments']['key']}"))
        for r in reversed(requests)
    )
    events = client.collect_turn("c")
    assert [r["callId"] for r in of_type(events, "toolResult")] == [
        "call_2_3",
        "call_2_2",
        "call_2_1",
    ]
    # The model gets the outputs in the order it asked for them.
    assert completed_with(events) == "value of k1\nvalue of k2\nvalue of k3"

    # A JSON-RPC error answer is a failed call; the turn goes on.
    send_turn(client, "c", "/call lookup {}")
    request = tool_call(client)
    client.send(
        {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "no such key"}}
    )
    events = client.collect_turn("c")
    (result,) = of_type(events, "toolResult")
    assert result["isError"] is True and "no such key" in result["content"][0]["text"]
    assert events[-1]["event"]["type"] == "turnComplete"

    assert outputs(client, "c") == [
        ("call_1_1", "value of k0", False),
        ("call_2_1", "value of k1", False),
        ("call_2_2", "value of k2", False),
        ("call_2_3", "value of k3", False),
        ("call_3_1", result["content"][0]["text"], True),
    ]
    assert client.from_server == []
    assert [m["params"]["event"]["type"] for m in end_cleanly(client)] == ["shutdownComplete"]


@both_framings
def test_a_call_not_answered_in_time_is_cancelled_and_fails(spawn: Any, framing: str) -> None:
    client = start(spawn, framing, "--tool-timeout", "0.2")
    new(client, "c")
    send_turn(client, "c", "/call lookup {}")
    request = tool_call(client)
    # The client holds the call: the server gives up on it and says so.
    assert client.server_request() == cancel_of(request)
    events = client.collect_turn("c")
    (result,) = of_type(events, "toolResult")
    assert result["isError"] is True
    assert result["content"][0]["text"] == "the client did not answer within 0.2 s"
    assert events[-1]["event"]["type"] == "turnComplete"
    # The answer that comes after the cancel changes nothing.
    client.send(answer(request, text_result("too late")))
    assert client.result("ping") == {}
    assert outputs(client, "c") == [("call_1_1", "the client did not answer within 0.2 s", True)]
    end_cleanly(client)
    assert "ignoring an answer to request id 's1'" in client.stderr()


@both_framings
def test_interrupt_and_remove_cancel_the_call_the_client_holds(spawn: Any, framing: str) -> None:
    client = start(spawn, framing)
    for cid in ("a", "b"):
        new(client, cid)

    # Interrupt: the held call is cancelled, the turn ends aborted.
    held = stop_while_held(client, "a", "interruptConversation", {"interrupted": True})
    # The late answer is ignored, and the server keeps serving: a new turn runs.
    client.send(answer(held, text_result("late")))
    send_turn(client, "a", "/call lookup {}")
    request = tool_call(client)
    client.send(answer(request, text_result("on time")))
    events = client.collect_turn("a")
    assert completed_with(events) == "on time"
    assert outputs(client, "a") == [
        ("call_1_1", "aborted", True),
        ("call_2_1", "on time", False),
    ]

    # Remove: the same, and the conversation is unloaded with its call stored as aborted.
    held = stop_while_held(client, "b", "removeConversation", {"removed": True})
    assert client.wait_event("b", "shutdownComplete")
    client.send(answer(held, text_result("late")))
    assert client.result("getConversation", {"conversationId": "b"})["loaded"] is False
    assert outputs(client, "b") == [("call_1_1", "aborted", True)]
    assert client.result("ping") == {}

    assert client.from_server == []
    end_cleanly(client)
    log = client.stderr()
    assert "ignoring an answer to request id 's1'" in log
    assert f"ignoring an answer to request id {held['id']!r}" in log


@both_framings
def test_end_of_input_fails_a_pending_call_as_client_gone(spawn: Any, framing: str) -> None:
    client = start(spawn, framing)
    new(client, "c")
    send_turn(client, "c", "/call lookup {}")
    tool_call(client)
    client.close_stdin()
    rest = client.read_until_eof()
    assert client.wait() == 0, client.stderr()
    events = [m["params"] for m in rest]
    (result,) = of_type(events, "toolResult")
    assert result["isError"] is True and "client gone" in result["content"][0]["text"]
    kinds = [e["event"]["type"] for e in events]
    assert kinds[-2:] == ["turnComplete", "shutdownComplete"]
    assert "client gone" in events[-2]["event"]["lastAgentMessage"]
    # Nobody can answer: no cancel is sent, and no other request either.
    assert client.from_server == []


@both_framings
def test_sigterm_cancels_the_call_the_client_holds_and_exits_0(spawn: Any, framing: str) -> None:
    client = start(spawn, framing)
    new(client, "c")
    send_turn(client, "c", "/call lookup {}")
    held = tool_call(client)
    client.signal(signal.SIGTERM)
    rest = client.read_until_eof()
    assert client.wait() == 0, client.stderr()
    assert client.from_server == [cancel_of(held)]
    assert [m["params"]["event"] for m in rest] == [
        aborted_result("call_1_1"),
        {"type": "turnAborted", "reason": "shutdown"},
        {"type": "shutdownComplete"},
    ]


def test_kill_9_while_the_client_holds_a_call_keeps_only_whole_turns(
    spawn: Any, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite3"
    a = spawn("--store", store)
    new(a, "c")
    # A whole tool turn of two rounds: its output asks for the second call.
    send_turn(a, "c", '/call lookup {"step": 1}')
    a.send(answer(tool_call(a), text_result('/call lookup {"step": 2}')))
    a.send(answer(tool_call(a), text_result("done")))
    events = a.collect_turn("c")
    assert completed_with(events) == "done"
    completed = history(a, "c")
    assert [(i["type"], i.get("callId")) for i in completed] == [
        ("message", None),
        ("functionCall", "call_1_1"),
        ("functionCallOutput", "call_1_1"),
        ("functionCall", "call_1_2"),
        ("functionCallOutput", "call_1_2"),
        ("message", None),
    ]
    # The next turn is killed in its second round, while the client holds the call.
    send_turn(a, "c", '/call lookup {"step": 1}')
    a.send(answer(tool_call(a), text_result('/call lookup {"step": 2}')))
    held = tool_call(a)
    assert held["params"]["callId"] == "call_2_2"
    a.signal(signal.SIGKILL)
    assert a.wait() == -signal.SIGKILL

    b = spawn("--store", store)
    (listed,) = b.result("listConversations", {})["items"]
    assert (listed["conversationId"], listed["historyLength"]) == ("c", len(completed))
    resumed = b.result("resumeConversation", {"conversationId": "c"})["sessionConfigured"]
    assert resumed["tools"] == [LOOKUP] and resumed["historyLength"] == len(completed)
    # Nothing of the killed turn: not its user message, not its finished first round.
    assert history(b, "c") == completed
    # A new turn works on that history, and its call is answered by the new client.
    send_turn(b, "c", '/call lookup {"step": 1}')
    request = tool_call(b)
    b.send(answer(request, text_result("after the restart")))
    events = b.collect_turn("c")
    assert completed_with(events) == "after the restart"
    after = history(b, "c")
    assert after[: len(completed)] == completed
    assert [(i["type"], i.get("callId"), i.get("output")) for i in after[len(completed) :]] == [
        ("message", None, None),
        ("functionCall", request["params"]["callId"], None),
        ("functionCallOutput", request["params"]["callId"], "after the restart"),
        ("message", None, None),
    ]
    call_ids = [i["callId"] for i in after if i["type"] == "functionCall"]
    assert len(set(call_ids)) == len(call_ids)
    end_cleanly(b)
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
