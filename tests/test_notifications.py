"""Notifications through the real binary: never answered, never fatal, whatever their params."""

from collections.abc import Iterator
from typing import Any

import pytest
from client import Client, server_env, text_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Every notification convmgr acts on, and methods a client may send as notifications.
# `exit` and `shutdown` end the session, so they have tests of their own below.
NOTIFICATIONS = [
    "$/cancelRequest",
    "notifications/cancelled",
    "initialized",
    "ping",
    "newConversation",
    "getConversation",
    "removeConversation",
    "forkConversation",
    "sendUserTurn",
    "interruptConversation",
    "listConversations",
    "resumeConversation",
    "no/such/method",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: the parser takes them
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
cancel_params = (
    st.fixed_dictionaries({}, optional={"id": json_values, "requestId": json_values}) | json_values
)
notification = st.tuples(st.sampled_from(NOTIFICATIONS), cancel_params)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One server for every fuzzed example: each must leave it serving."""
    home = tmp_path_factory.mktemp("notifications")
    client = Client(["--no-store"], env=server_env(home))
    yield client
    client.kill()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(notification, min_size=1, max_size=10))
def test_no_notification_ends_or_answers(server: Client, batch: list[tuple[str, Any]]) -> None:
    messages: list[dict[str, Any]] = []
    for method, params in batch:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        messages.append(message)
    ping_id = server.next_id()
    server.send_many([*messages, {"jsonrpc": "2.0", "id": ping_id, "method": "ping"}])
    assert server.response(ping_id) == {"jsonrpc": "2.0", "id": ping_id, "result": {}}
    # Nothing but the ping was answered (a notification may start work that emits events).
    assert server.responses == {}
    assert server.batches == []
    server.notifications.clear()


@pytest.mark.parametrize(
    "params",
    [{"id": [1]}, {"id": {"a": 1}}, {"id": 1.5}, {"requestId": []}, {"requestId": {}}, [[1]]],
)
def test_a_cancel_with_an_unusable_id_leaves_the_turn_to_finish(spawn: Any, params: Any) -> None:
    client = spawn("--no-store")
    method = "notifications/cancelled" if "requestId" in str(params) else "$/cancelRequest"
    client.send_many(
        [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "c"}},
            {
                "id": 2,
                "method": "sendUserTurn",
                "params": {"conversationId": "c", "input": text_input("a b c")},
            },
            {"method": method, "params": params},
            {"id": 3, "method": "ping"},
        ]
    )
    assert client.response(3)["result"] == {}
    assert client.collect_turn("c")[-1]["event"]["type"] == "turnComplete"
    client.close_stdin()
    client.read_until_eof()
    assert client.wait() == 0


@pytest.mark.parametrize("framing", ["ndjson", "lsp"])
def test_lsp_style_shutdown_and_exit_with_null_params(spawn: Any, framing: str) -> None:
    client = spawn("--no-store", framing=framing)
    assert client.request("shutdown", None, msg_id=1) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    client.send({"jsonrpc": "2.0", "id": 2, "method": "shutdown", "params": None})
    assert client.response(2)["error"]["code"] == -32600  # already shut down
    client.send({"jsonrpc": "2.0", "method": "exit", "params": None})
    client.expect_eof()
    assert client.wait() == 0


def test_null_params_mean_no_params(spawn: Any) -> None:
    client = spawn("--no-store")
    client.send({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": None})
    assert client.response(1)["result"] == {}
    client.send({"jsonrpc": "2.0", "id": 2, "method": "listConversations", "params": None})
    assert client.response(2)["result"]["items"] == []


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "method": "exit", "params": 5},
        {"jsonrpc": "1.0", "method": "initialized"},
        {"jsonrpc": "2.0", "method": "initialized", "result": 1},
        {"method": "ping", "params": "text"},
    ],
)
def test_a_malformed_notification_is_never_answered(spawn: Any, message: Any) -> None:
    client = spawn("--no-store")
    client.send(message)
    assert client.request("ping", msg_id=7) == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert client.responses == {}
