"""Export/import of conversations as JSON lines, and the default store path."""

import json
from pathlib import Path

import pytest

from convmgr.model import (
    ConversationExists,
    ConversationNotFound,
    ConversationRecord,
    ConversationSettings,
    Item,
    message_item,
    preview_of,
)
from convmgr.store.base import ConversationStore
from convmgr.store.paths import default_store_path
from convmgr.transfer import EXPORT_PAGE, export_conversation, import_conversation

pytestmark = pytest.mark.anyio


ITEMS: list[Item] = [
    message_item("system", "setup"),
    message_item("user", "hello there"),
    {"type": "reasoning", "text": "thinking"},
    {"type": "functionCall", "callId": "c1", "name": "ls", "arguments": "{}"},
    {"type": "functionCallOutput", "callId": "c1", "output": "a b"},
    message_item("assistant", "hi"),
]


def sample(cid: str = "src", items: list[Item] = ITEMS) -> ConversationRecord:
    """A stored-looking record with every field set."""
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(
            provider="echo",
            model="echo-1",
            instructions="be brief",
            cwd="/work",
            metadata={"k": [1, "é"]},
            temperature=0.5,
            max_output_tokens=64,
        ),
        created_at="2026-01-02T03:04:05.000006Z",
        updated_at="2026-01-02T03:05:00.000000Z",
        forked_from="older",
        history_length=len(items),
        last_seq=12,
        preview=preview_of(items),
    )


async def export_lines(store: ConversationStore, cid: str) -> list[str]:
    """What `convmgr export` prints."""
    return [json.dumps(line) async for line in export_conversation(store, cid)]


async def test_export_shape(store: ConversationStore) -> None:
    await store.create(sample(), ITEMS)
    lines = [json.loads(line) for line in await export_lines(store, "src")]
    header = lines[0]
    assert header["type"] == "conversation"
    assert header["conversationId"] == "src"
    assert header["maxOutputTokens"] == 64
    assert header["historyLength"] == len(ITEMS)
    assert header["forkedFrom"] == "older"
    assert header["lastSeq"] == 12
    assert lines[1:] == ITEMS


async def test_round_trip(store: ConversationStore) -> None:
    await store.create(sample(), ITEMS)
    lines = await export_lines(store, "src")
    await store.delete("src")
    assert await import_conversation(store, lines) == "src"
    assert await store.get("src") == sample()
    assert await store.read_items("src") == ITEMS


async def test_import_under_another_id_and_taken_id(store: ConversationStore) -> None:
    await store.create(sample(), ITEMS)
    lines = await export_lines(store, "src")
    with pytest.raises(ConversationExists):
        await import_conversation(store, lines)
    assert await import_conversation(store, lines, conversation_id="copy") == "copy"
    assert await store.read_items("copy") == ITEMS
    with pytest.raises(ValueError, match="invalid conversation id"):
        await import_conversation(store, lines, conversation_id="../etc")


async def test_export_pages_long_history(store: ConversationStore) -> None:
    items = [message_item("user", str(n)) for n in range(EXPORT_PAGE * 2 + 3)]
    await store.create(sample(items=items), items)
    lines = await export_lines(store, "src")
    assert [json.loads(line) for line in lines[1:]] == items


async def test_export_unknown(store: ConversationStore) -> None:
    with pytest.raises(ConversationNotFound):
        await export_lines(store, "nope")


HEADER = json.dumps({"type": "conversation", "conversationId": "x", "provider": "p", "model": "m"})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        (["", "  "], "empty"),
        (["{not json"], "line 1: not valid JSON"),
        (['{"type": "message"}'], "line 1: expected the"),
        (['{"type": "conversation", "provider": "p"}'], "line 1: invalid header"),
        (
            ['{"type": "conversation", "conversationId": "a/b", "provider": "p", "model": "m"}'],
            "line 1: invalid header: conversationId",
        ),
        ([HEADER, "", '{"type": "message", "role": "user"}'], "line 3: invalid history item"),
        ([HEADER, '{"type": "bogus"}'], "line 2: invalid history item"),
        ([HEADER, "[1, 2]"], "line 2: invalid history item"),
        ([HEADER, '{"type": "reasoning", "text": "ok"}', "nope"], "line 3: not valid JSON"),
    ],
)
async def test_import_bad_input(store: ConversationStore, lines: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        await import_conversation(store, lines)
    assert "\n" not in str(info.value)
    assert await store.get("x") is None


async def test_import_normalises(store: ConversationStore) -> None:
    lines = [
        json.dumps(
            {
                "type": "conversation",
                "conversationId": "x",
                "provider": "p",
                "model": "m",
                "createdAt": "2026-01-02T03:04:05+01:00",
                "historyLength": 999,
                "preview": "lies",
                "ephemeral": True,
            }
        )
        + "\n",
        json.dumps({"type": "message", "role": "user", "content": [{"text": "hi"}], "x": 1}),
        json.dumps({"type": "functionCall", "call_id": "c", "name": "n", "arguments": ""}),
    ]
    assert await import_conversation(store, lines) == "x"
    record = await store.get("x")
    assert record is not None
    assert record.created_at == "2026-01-02T02:04:05.000000Z"
    assert record.updated_at == record.created_at
    assert (record.history_length, record.preview, record.ephemeral) == (2, "hi", False)
    assert await store.read_items("x") == [
        message_item("user", "hi"),
        {"type": "functionCall", "callId": "c", "name": "n", "arguments": ""},
    ]


def test_default_store_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVMGR_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "conversations.sqlite3"
    monkeypatch.delenv("CONVMGR_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = default_store_path()
    assert path.name == "conversations.sqlite3"
    assert "convmgr" in path.parts
