"""One definition of a conversation's settings: the wire, the store and export derive from it."""

import json
import sqlite3
from pathlib import Path

import pytest

from convmgr.dialects.convmgr.methods import ConversationSettingsParams
from convmgr.dialects.convmgr.translate import settings_of
from convmgr.model import SETTINGS_FIELDS, ConversationSettings
from convmgr.store.sqlite import SqliteStore
from convmgr.store.sqlite_schema import MIGRATIONS
from convmgr.transfer import header_of

pytestmark = pytest.mark.anyio


def test_the_wire_params_name_every_setting() -> None:
    assert set(ConversationSettingsParams.model_fields) == set(SETTINGS_FIELDS)


def test_settings_of_params_carries_every_field() -> None:
    values = {
        "provider": "p",
        "model": "m",
        "instructions": "i",
        "cwd": "/c",
        "metadata": {"k": 1},
        "ephemeral": True,
        "temperature": 0.5,
        "max_output_tokens": 7,
        "tools": [{"name": "t", "description": "d", "inputSchema": {"type": "object"}}],
        "mcp_servers": ["files"],
    }
    assert set(values) == set(SETTINGS_FIELDS)
    params = ConversationSettingsParams.model_validate(values)
    assert settings_of(params) == ConversationSettings(**values)  # type: ignore[arg-type]


def test_given_and_from_given_round_trip_and_skip_unknown_names() -> None:
    settings = ConversationSettings(provider="p", model="m", metadata={"a": [1]})
    assert settings.given() == {"provider": "p", "model": "m", "metadata": {"a": [1]}}
    assert ConversationSettings.from_given({**settings.given(), "fromTheFuture": 1}) == settings


def test_overlay_replaces_only_what_is_given() -> None:
    base = ConversationSettings(provider="p", model="m", cwd="/a")
    assert base.overlay(ConversationSettings(cwd="/b")) == ConversationSettings(
        provider="p", model="m", cwd="/b"
    )


async def test_a_version_2_store_moves_its_setting_columns_into_one_object(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version (version) VALUES (2)")
    for step in MIGRATIONS[:2]:
        for statement in step:
            db.execute(statement)
    columns = (
        "conversation_id, provider, model, instructions, cwd, metadata, ephemeral, "
        "temperature, max_output_tokens, created_at, updated_at, forked_from, "
        "history_length, last_seq, preview"
    )
    rows = [
        (
            "a",
            "echo",
            "m1",
            "be brief",
            "/w",
            '{"k": [1, "é"]}',
            0,
            0.5,
            9,
            "t1",
            "t2",
            None,
            0,
            3,
            "hi",
        ),
        (
            "b",
            "echo",
            "m2",
            None,
            None,
            '{"x": NaN, "y": -Infinity}',
            0,
            None,
            None,
            "t1",
            "t3",
            "a",
            0,
            0,
            None,
        ),
    ]
    db.executemany(f"INSERT INTO conversations ({columns}) VALUES ({', '.join('?' * 15)})", rows)
    db.commit()
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        a = await store.get("a")
        b = await store.get("b")
    finally:
        await store.close()
    assert a is not None and b is not None
    assert a.settings == ConversationSettings(
        provider="echo",
        model="m1",
        instructions="be brief",
        cwd="/w",
        metadata={"k": [1, "é"]},
        temperature=0.5,
        max_output_tokens=9,
    )
    assert (a.created_at, a.updated_at, a.last_seq, a.preview) == ("t1", "t2", 3, "hi")
    # NaN and Infinity stored by 1.0 read back as null, as the protocol says.
    assert b.settings.metadata == {"x": None, "y": None}
    assert b.forked_from == "a"
    header = header_of(a)
    assert json.loads(json.dumps(header))["instructions"] == "be brief"
    assert "ephemeral" not in header
