"""One store, two dialects: sessions made with `convmgr acp` are conversations to `convmgr serve`.

And the other way round. Both processes run one after the other on the same
SQLite file (a lease would refuse a conversation open in the other).
"""

from pathlib import Path
from typing import Any

import pytest
from acp import text_block
from acp_harness import FULL_CAPABILITIES, agent
from client import text_input

pytestmark = pytest.mark.anyio


async def test_an_acp_session_is_listed_and_resumed_by_serve(tmp_path: Path, spawn: Any) -> None:
    store = str(tmp_path / "store.sqlite3")
    async with agent(tmp_path, "--store", store) as (conn, _, _):
        await conn.initialize(protocol_version=1)
        sid = str((await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id)
        await conn.prompt(session_id=sid, prompt=[text_block("made in an editor")])

    client = spawn("--store", store)
    listed = client.result("listConversations", {})
    assert sid in [info["conversationId"] for info in listed["items"]]
    configured = client.result("resumeConversation", {"conversationId": sid})
    assert configured["sessionConfigured"]["cwd"] == str(tmp_path)
    client.result("sendUserTurn", {"conversationId": sid, "input": text_input("and on")})
    events = client.collect_turn(sid)
    assert events[-1]["event"]["type"] == "turnComplete"
    history = client.result("getConversation", {"conversationId": sid, "includeHistory": True})
    texts = [item["content"][0]["text"] for item in history["history"] if item["role"] == "user"]
    assert texts == ["made in an editor", "and on"]


async def test_a_serve_conversation_is_listed_and_loaded_by_acp(tmp_path: Path, spawn: Any) -> None:
    store = str(tmp_path / "store.sqlite3")
    client = spawn("--store", store)
    client.result("newConversation", {"conversationId": "from-serve", "cwd": str(tmp_path)})
    client.result("sendUserTurn", {"conversationId": "from-serve", "input": text_input("hi")})
    client.collect_turn("from-serve")
    client.close_stdin()
    assert client.wait() == 0

    async with agent(tmp_path, "--store", store) as (conn, editor, wire):
        await conn.initialize(protocol_version=1, client_capabilities=FULL_CAPABILITIES)
        listed = await conn.list_sessions(cwd=str(tmp_path))
        assert [info.session_id for info in listed.sessions] == ["from-serve"]
        await conn.load_session(cwd=str(tmp_path), session_id="from-serve", mcp_servers=[])
        kinds = [u["sessionUpdate"] for u in wire.updates("from-serve")]
        assert kinds == ["user_message_chunk", "agent_message_chunk"]
        reply = await conn.prompt(session_id="from-serve", prompt=[text_block("from acp")])
        assert reply.stop_reason == "end_turn" and editor.text("from-serve") == "hi" + "from acp"
