"""ACP's `usage_update`: sent after a turn only when the provider gives `context_window`."""

import json
from typing import Any

import anyio
import pytest
from acp import schema as s

from convmgr.core import events as e
from convmgr.dialects.acp.notifications import SessionUpdates
from convmgr.jsonrpc.outbound import Outbound
from convmgr.jsonrpc.transport import memory_pipe
from convmgr.providers.config import parse_config

pytestmark = pytest.mark.anyio


async def sent_updates(window: int | None, usage: e.TokenUsage) -> list[dict[str, Any]]:
    """The session/update params the sink queues for one TokenUsage event."""
    server_end, client_end = memory_pipe(8)
    with server_end, client_end:
        outbound = Outbound(server_end)
        sink = SessionUpdates(outbound)
        sink.window_of = lambda session_id: window
        sink.emit("sess", 1, "turn", usage)
        async with anyio.create_task_group() as group:
            group.start_soon(outbound.run)
            await outbound.flush()
            group.cancel_scope.cancel()
        data = b""
        if window is not None:
            data = await client_end.receive()
    return [json.loads(line)["params"] for line in data.splitlines() if line]


async def test_a_known_window_gives_a_usage_update_the_schema_accepts() -> None:
    (params,) = await sent_updates(128_000, e.TokenUsage(900, 100, 1_500, context_tokens=1_000))
    assert params["update"] == {"sessionUpdate": "usage_update", "used": 1_000, "size": 128_000}
    s.SessionNotification.model_validate(params)


async def test_without_a_window_nothing_is_sent() -> None:
    assert await sent_updates(None, e.TokenUsage(1, 2, 3)) == []


def test_context_window_is_read_from_the_provider_table() -> None:
    toml = (
        b'[providers.p]\nkind = "openai-chat"\nbase_url = "http://127.0.0.1:1/v1"\n'
        b'default_model = "m"\ncontext_window = 128000\n'
    )
    config = parse_config("c.toml", toml)
    assert config.providers["p"].settings.context_window == 128_000
    with pytest.raises(Exception, match="context_window"):
        parse_config("c.toml", toml.replace(b"128000", b"0"))
