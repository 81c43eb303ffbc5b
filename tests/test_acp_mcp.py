"""MCP servers a client passes in `session/new`: started for that session only, never stored.

The hub side (McpHub.add_servers / remove_servers) and the whole path through
`convmgr acp` with mcp-server-time, a real MCP server nobody here wrote.
"""

import json
import sys
from pathlib import Path

import pytest
from acp import schema as s
from acp import text_block
from acp_harness import agent
from mcp_servers import time_server

from convmgr.tools.mcp import McpHub

pytestmark = pytest.mark.anyio


async def test_an_owners_servers_are_its_own_and_end_with_it() -> None:
    async with McpHub({"time": time_server()}) as hub:
        keys = hub.add_servers("conv-a", [time_server()])
        assert keys == ("conv-a:time",) and "conv-a:time" not in hub.servers
        tools, failures = await hub.tools(["time", *keys])
        assert failures == []
        names = sorted(tool.name for tool in tools)
        # Both are "time" to the model: the names stay distinct.
        assert len(names) == len(set(names)) == 4
        own = next(tool for tool in tools if tool.key == "conv-a:time")
        assert own.server == "time"
        outcome = await hub.call(own, {"timezone": "UTC"})
        assert not outcome.is_error and "UTC" in outcome.text
        hub.remove_servers("conv-a")
        gone = await hub.call(own, {"timezone": "UTC"})
        assert gone.is_error and "not running" in gone.text
        # The configured one goes on.
        configured = next(tool for tool in tools if tool.key is None)
        assert not (await hub.call(configured, {"timezone": "UTC"})).is_error


async def test_a_session_calls_its_own_server_after_approval(tmp_path: Path) -> None:
    store = str(tmp_path / "store.sqlite3")
    server = s.McpServerStdio(
        name="clock", command=sys.executable, args=["-m", "mcp_server_time"], env=[]
    )
    async with agent(tmp_path, "--store", store) as (conn, editor, wire):
        await conn.initialize(protocol_version=1)
        sid = str((await conn.new_session(cwd=str(tmp_path), mcp_servers=[server])).session_id)
        call = json.dumps({"timezone": "UTC"})
        reply = await conn.prompt(
            session_id=sid, prompt=[text_block(f"/call clock__get_current_time {call}")]
        )
        assert reply.stop_reason == "end_turn"
        assert len(editor.permissions) == 1
        done = [u for u in wire.updates(sid) if u.get("status") == "completed"]
        assert '"timezone": "UTC"' in done[0]["content"][0]["content"]["text"]

    # Never stored: resumed without servers, the session has no tools (echo echoes).
    async with agent(tmp_path, "--store", store) as (conn, editor, _):
        await conn.initialize(protocol_version=1)
        await conn.resume_session(cwd=str(tmp_path), session_id=sid)
        text = f"/call clock__get_current_time {call}"
        await conn.prompt(session_id=sid, prompt=[text_block(text)])
        assert editor.text(sid) == text
    assert b"mcp_server_time" not in Path(store).read_bytes()
