"""What only a process shows of the wire contract: real pipes, exit, signals, stdout.

Every test spawns `python -m convmgr` and talks to it as a client would, in
both framings; the client (tests/client.py) checks every message it reads
against the JSON-RPC envelope and the wire models, and fails when stdout
carries anything that is not a protocol message. The rest of the contract is
tested in memory, on the same session code: test_rpc_in_memory.py.
"""

import pytest
from client import frame, text_input

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


def test_exit_without_shutdown(server):
    new(server, "a")
    server.notify("exit")
    events = [m["params"]["event"]["type"] for m in server.read_until_eof()]
    assert events == ["shutdownComplete"]
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


# --- framing on real pipes ------------------------------------------------------------------


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


# --- large input, logs ------------------------------------------------------------------------


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


# --- two processes on one store ------------------------------------------------------------


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
