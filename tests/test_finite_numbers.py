"""JSON has no NaN or Infinity: refused on input, never written, read back as null."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest

NON_FINITE = [
    b'{"a": NaN}',
    b'{"b": 1e400}',
    b'{"c": -Infinity}',
    b'{"d": [1, {"e": Infinity}]}',
]


@pytest.mark.parametrize("metadata", NON_FINITE)
def test_non_finite_metadata_is_invalid_params(spawn: Any, tmp_path: Path, metadata: bytes) -> None:
    client = spawn("--store", tmp_path / "s.sqlite3")
    client.send_raw(
        b'{"jsonrpc":"2.0","id":1,"method":"newConversation",'
        b'"params":{"conversationId":"c","metadata":' + metadata + b"}}\n"
    )
    error = client.response(1)["error"]
    assert error["code"] == -32602
    assert "finite" in error["message"]
    # Nothing was created: the id is free.
    assert client.error("getConversation", {"conversationId": "c"})["code"] == -32001


def test_non_finite_temperature_is_invalid_params(spawn: Any) -> None:
    client = spawn("--no-store")
    client.send_raw(
        b'{"id":1,"method":"newConversation","params":{"temperature":NaN}}\n'
        b'{"id":2,"method":"sendUserTurn","params":{"conversationId":"x","input":[],'
        b'"overrides":{"maxOutputTokens":1e400}}}\n'
    )
    assert client.response(1)["error"]["code"] == -32602
    assert client.response(2)["error"]["code"] == -32602


def test_a_non_finite_value_stored_by_an_older_version_is_read_as_null(
    spawn: Any, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite3"
    first = spawn("--store", store)
    first.result("newConversation", {"conversationId": "c", "metadata": {"a": 1, "b": 2}})
    first.close_stdin()
    first.read_until_eof()
    assert first.wait() == 0
    with sqlite3.connect(store) as db:
        db.execute(
            "UPDATE conversations SET settings = ? WHERE conversation_id = 'c'",
            ('{"provider": "echo", "model": "echo", "metadata": {"a": NaN, "b": -Infinity}}',),
        )
    db.close()
    # The test client parses strictly: a NaN or Infinity on stdout fails the read.
    second = spawn("--store", store)
    assert second.result("getConversation", {"conversationId": "c"})["metadata"] == {
        "a": None,
        "b": None,
    }
    listed = second.result("listConversations", {})["items"]
    assert listed[0]["metadata"] == {"a": None, "b": None}
