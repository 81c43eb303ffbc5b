"""docs/protocol.md's limits: metadata and instructions sizes, no response over the limit."""

import json
from typing import Any

import pytest
from client import text_input

LIMIT = 100_000


def wire_size(message: Any) -> int:
    """About the size the server wrote (it writes compact JSON)."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.mark.parametrize(
    ("field", "size", "ok"),
    [
        ("metadata", 64 * 1024, True),
        ("metadata", 64 * 1024 + 1, False),
        ("instructions", 1024 * 1024, True),
        ("instructions", 1024 * 1024 + 1, False),
    ],
)
def test_metadata_and_instructions_limits(spawn: Any, field: str, size: int, ok: bool) -> None:
    client = spawn("--no-store")
    if field == "metadata":
        value: Any = {"k": "x" * (size - len('{"k":""}'))}
    else:
        value = "x" * (size - 2)  # the quotes count: the limit is on JSON text
    response = client.request("newConversation", {field: value})
    if ok:
        assert "result" in response
    else:
        assert response["error"]["code"] == -32602
        assert field in response["error"]["message"]


def test_history_pages_fit_the_limit_and_say_where_to_go_on(spawn: Any) -> None:
    client = spawn("--no-store", "--max-message-bytes", LIMIT)
    client.result("newConversation", {"conversationId": "c"})
    for n in range(10):
        client.result("sendUserTurn", {"conversationId": "c", "input": text_input(f"{n} " * 4000)})
        client.collect_turn("c")
    history: list[Any] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        response = client.request(
            "getConversation",
            {"conversationId": "c", "includeHistory": True, "historyOffset": offset},
        )
        assert wire_size(response) <= LIMIT
        result = response["result"]
        assert result["history"], "every page makes progress"
        history += result["history"]
        offset = result["nextHistoryOffset"]
        pages += 1
    assert pages > 1
    assert len(history) == 20
    assert [item["role"] for item in history] == ["user", "assistant"] * 10
    assert history[-1]["content"][0]["text"] == "9 " * 4000


def test_a_history_limit_short_of_the_end_gives_the_next_offset(spawn: Any) -> None:
    client = spawn("--no-store")
    client.result("newConversation", {"conversationId": "c"})
    client.result("sendUserTurn", {"conversationId": "c", "input": text_input("hi")})
    client.collect_turn("c")
    page = client.result(
        "getConversation", {"conversationId": "c", "includeHistory": True, "historyLimit": 1}
    )
    assert (len(page["history"]), page["nextHistoryOffset"]) == (1, 1)
    rest = client.result(
        "getConversation", {"conversationId": "c", "includeHistory": True, "historyOffset": 1}
    )
    assert (len(rest["history"]), rest["nextHistoryOffset"]) == (1, None)
    plain = client.result("getConversation", {"conversationId": "c"})
    assert "history" not in plain and "nextHistoryOffset" not in plain


def test_an_item_alone_over_the_limit_is_an_error_not_a_huge_response(spawn: Any) -> None:
    client = spawn("--no-store", "--max-message-bytes", 20_000)
    client.result("newConversation", {"conversationId": "c"})
    client.result("sendUserTurn", {"conversationId": "c", "input": text_input("y" * 19_700)})
    client.collect_turn("c")
    response = client.request("getConversation", {"conversationId": "c", "includeHistory": True})
    assert response["error"]["code"] == -32005
    assert response["error"]["data"]["limit"] == 20_000
    # The client can step over it.
    after = client.result(
        "getConversation", {"conversationId": "c", "includeHistory": True, "historyOffset": 2}
    )
    assert after["history"] == [] and after["nextHistoryOffset"] is None


def test_list_pages_fit_the_limit_and_the_cursor_goes_on(spawn: Any, tmp_path: Any) -> None:
    client = spawn("--store", tmp_path / "s.sqlite3", "--max-message-bytes", 300_000)
    big = {"k": "m" * 60_000}
    for n in range(12):
        client.result("newConversation", {"conversationId": f"c{n:02}", "metadata": big})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        response = client.request("listConversations", {"cursor": cursor, "limit": 500})
        assert wire_size(response) <= 300_000
        result = response["result"]
        seen += [item["conversationId"] for item in result["items"]]
        pages += 1
        cursor = result["nextCursor"]
        if cursor is None:
            break
    assert pages > 1
    assert sorted(seen) == [f"c{n:02}" for n in range(12)]
    assert len(set(seen)) == 12
