"""Ordering and lifecycle under load (docs/protocol.md and 3), through real pipes.

Requests are pipelined: written before anything is read. Timeouts are failure
guards only, and nothing is measured: "promptly" is shown by order, a turn cut
short before its last word (how fast it happens belongs to bench/). What needs
no process (interrupts, busy turns and removes pipelined behind a turn) is in
test_rpc_in_memory.py.
"""

import signal
import threading
from collections import defaultdict

import pytest
from client import TERMINAL, ServerClosed, encode, text_input

LONG_TURN = "w " * 1_000_000


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


@pytest.mark.parametrize("framing", ["ndjson", "lsp"])
def test_500_pipelined_conversations(spawn, framing):
    """Creation response before the first event, turn response before turnStarted,
    seq from 1 without gaps, one terminal event per turn, the reply equals the input."""
    n = 500
    client = spawn("--no-store", framing=framing)
    texts = {f"p{i}": words(f"p{i}", 200) for i in range(n)}
    requests = []
    for i, (cid, text) in enumerate(texts.items()):
        requests.append(
            {
                "jsonrpc": "2.0",
                "id": 2 * i,
                "method": "newConversation",
                "params": {"conversationId": cid},
            }
        )
        requests.append(
            {
                "jsonrpc": "2.0",
                "id": 2 * i + 1,
                "method": "sendUserTurn",
                "params": {"conversationId": cid, "input": text_input(text)},
            }
        )
    client.send_many(requests)  # all of it written before a byte is read

    created_at: dict[str, int] = {}
    turn_answered_at: dict[str, int] = {}
    turn_ids: dict[str, str] = {}
    events: dict[str, list[dict]] = defaultdict(list)
    first_event_at: dict[str, int] = {}
    answered = 0
    terminals = 0
    index = 0
    while answered < 2 * n or terminals < n:
        msg = client.read_message(timeout=30)
        index += 1
        if "method" in msg:
            p = msg["params"]
            cid = p["conversationId"]
            first_event_at.setdefault(cid, index)
            if p["event"]["type"] == "turnStarted":
                assert cid in turn_answered_at, f"{cid}: turnStarted before the turn's response"
            events[cid].append(p)
            terminals += p["event"]["type"] in TERMINAL
            continue
        answered += 1
        assert "result" in msg, msg
        i, is_turn = divmod(msg["id"], 2)
        cid = f"p{i}"
        if is_turn:
            assert cid in created_at
            turn_answered_at[cid] = index
            turn_ids[cid] = msg["result"]["turnId"]
        else:
            assert msg["result"]["conversationId"] == cid
            created_at[cid] = index

    assert len(created_at) == n and len(turn_answered_at) == n
    for cid, text in texts.items():
        evs = events[cid]
        assert created_at[cid] < first_event_at[cid], cid
        assert turn_answered_at[cid] < first_event_at[cid], cid
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), cid
        assert {e["turnId"] for e in evs} == {turn_ids[cid]}
        types = [e["event"]["type"] for e in evs]
        assert types[0] == "turnStarted"
        assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "turnComplete", cid
        deltas = "".join(e["event"]["delta"] for e in evs if "delta" in e["event"])
        (message,) = [e["event"]["text"] for e in evs if e["event"]["type"] == "agentMessage"]
        assert deltas == message == text == evs[-1]["event"]["lastAgentMessage"]
        assert types.count("agentMessageDelta") == 200

    # Nothing more is pending, and the session is still responsive.
    assert client.result("ping") == {}
    assert client.notifications == []


def test_end_of_stdin_drains_running_turns(spawn):
    """`printf ... | convmgr`: every answer and every turn's events, then exit status 0."""
    client = spawn("--no-store")
    texts = {f"e{i}": words(f"e{i}", 2000) for i in range(20)}
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
        requests.append(
            {"id": f"get-{cid}", "method": "getConversation", "params": {"conversationId": cid}}
        )
    client.send_many(requests)
    client.close_stdin()
    messages = client.read_until_eof(timeout=60)
    assert client.wait() == 0

    answered = {m["id"]: m for m in messages if "id" in m}
    assert set(answered) == {r["id"] for r in requests}
    assert all("result" in m for m in answered.values())
    events = defaultdict(list)
    for m in messages:
        if "method" in m:
            events[m["params"]["conversationId"]].append(m["params"])
    for cid, text in texts.items():
        evs = events[cid]
        types = [e["event"]["type"] for e in evs]
        assert types[-2:] == ["turnComplete", "shutdownComplete"], (cid, types[-3:])
        assert evs[-2]["event"]["lastAgentMessage"] == text
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_turn_exits_promptly(spawn, signum):
    client = spawn("--no-store")
    client.result("newConversation", {"conversationId": "sig"})
    turn_id = client.result(
        "sendUserTurn", {"conversationId": "sig", "input": text_input(LONG_TURN)}
    )["turnId"]
    first = client.wait_event("sig", "agentMessageDelta")
    client.signal(signum)
    assert client.wait(timeout=60) == 0  # the timeout is a failure guard only
    # What was written is well-formed; a terminal event, if it made it out, says shutdown.
    rest = client.read_until_eof(timeout=60)
    ends = [m["params"] for m in rest if "method" in m and m["params"]["event"]["type"] in TERMINAL]
    for end in ends:
        assert end["turnId"] == turn_id
        assert end["event"] == {"type": "turnAborted", "reason": "shutdown"}
    # Promptly: the server exited in the middle of the turn, not after its last word.
    assert_cut_short([first, *(m["params"] for m in rest if "method" in m)])


def test_client_writing_20000_requests_before_reading(spawn):
    """The server keeps reading while its stdout pipe is full: no deadlock."""
    n = 20_000
    client = spawn("--no-store", start_reading=False)
    requests = [{"id": 0, "method": "newConversation", "params": {"conversationId": "c"}}]
    for i in range(1, n + 1):
        if i % 2:
            requests.append({"id": i, "method": "ping"})
        else:
            requests.append(
                {"id": i, "method": "getConversation", "params": {"conversationId": "c"}}
            )
    for r in requests:
        client._remember(r)
    data = b"".join(encode(r, "ndjson") for r in requests)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            client.send_raw(data)
        except BaseException as exc:  # reported below
            failure.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the server stopped reading: deadlock"
    assert not failure, failure
    client.start_reading()
    seen = set()
    while len(seen) < n + 1:
        msg = client.read_message(timeout=30)
        assert "result" in msg, msg
        seen.add(msg["id"])
    assert seen == set(range(n + 1))
    client.close_stdin()
    rest = client.read_until_eof()
    assert [m["params"]["event"]["type"] for m in rest] == ["shutdownComplete"]
    assert client.wait() == 0
    with pytest.raises(ServerClosed):
        client.read_message(timeout=1)
