"""Approvals and MCP tool sources through the real session, with a hub standing in for MCP.

The hub here is a test double of convmgr's McpHub interface: it lets the
approval rules and the toolSourceFailed event be checked without processes.
That convmgr speaks MCP to real servers is tests/test_mcp_*.py's job.
"""

from collections.abc import Sequence
from typing import Any

import pytest
from client import text_input
from rpc_memory import MemoryClient, session

from convmgr.model import McpServerSettings, ToolOutcome
from convmgr.tools.mcp import McpHub, McpTool

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


class StandInHub(McpHub):
    """Servers `clock` (approval "ask") and `calc` (approval "auto"); `broken` never starts."""

    def __init__(self) -> None:
        super().__init__(
            {
                "clock": McpServerSettings("clock", "clock-server", approval="ask"),
                "calc": McpServerSettings("calc", "calc-server", approval="auto"),
                "broken": McpServerSettings("broken", "no-such-command"),
            }
        )
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def tools(self, servers: Sequence[str]) -> tuple[list[McpTool], list[tuple[str, str]]]:
        tools = {
            "clock": McpTool("clock", "now", "clock__now", "The time.", {"type": "object"}),
            "calc": McpTool("calc", "add", "calc__add", "Adds.", {"type": "object"}),
        }
        failures = [(s, "cannot start no-such-command") for s in servers if s == "broken"]
        return [tools[s] for s in servers if s in tools], failures

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((tool.name, arguments))
        return ToolOutcome(f"{tool.tool} ran")


def reply(request: Message, result: Any) -> Message:
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


async def start(client: MemoryClient, text: str, servers: list[str] | None = None) -> None:
    params: Message = {"conversationId": "c"}
    if servers is not None:
        params["mcpServers"] = servers
    await client.result("newConversation", params)
    await client.result("sendUserTurn", {"conversationId": "c", "input": text_input(text)})


def results(events: list[Message]) -> list[Message]:
    return [e["event"] for e in events if e["event"]["type"] == "toolResult"]


@pytest.mark.parametrize(("decision", "ran"), [("allow", True), ("deny", False), ("maybe", False)])
async def test_an_ask_server_call_waits_for_the_clients_decision(decision: str, ran: bool) -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        await client.result("initialize", {"capabilities": {"approvals": True}})
        await start(client, '/call clock__now {"tz": "UTC"}', ["clock"])
        request = await client.server_request()
        assert request["method"] == "approval/request"
        assert request["params"]["name"] == "clock__now"
        assert request["params"]["source"] == "mcp" and request["params"]["server"] == "clock"
        assert request["params"]["arguments"] == {"tz": "UTC"}
        assert hub.calls == []  # nothing runs before the answer
        await client.send(reply(request, {"decision": decision}))
        events = await client.collect_turn("c")
        (result,) = results(events)
        call = next(e["event"] for e in events if e["event"]["type"] == "toolCall")
        assert call["source"] == "mcp" and call["server"] == "clock" and call["tool"] == "now"
        if ran:
            assert hub.calls == [("clock__now", {"tz": "UTC"})]
            assert result["isError"] is False and "denied" not in result
        else:
            assert hub.calls == []
            assert result["isError"] is True and result["denied"] is True


async def test_allow_always_holds_for_that_tool_in_that_conversation() -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        await client.result("initialize", {"capabilities": {"approvals": True}})
        await start(client, "/call clock__now {}", ["clock"])
        request = await client.server_request()
        await client.send(reply(request, {"decision": "allowAlways"}))
        await client.collect_turn("c")
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call clock__now {}")}
        )
        events = await client.collect_turn("c")
        assert client.from_server == []  # not asked again
        assert len(hub.calls) == 2 and results(events)[0]["isError"] is False


async def test_without_the_approvals_capability_nobody_is_asked_and_the_call_is_denied() -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        await client.result("initialize", {"capabilities": {}})
        await start(client, "/call clock__now {}\n/call calc__add {}", ["clock", "calc"])
        events = await client.collect_turn("c")
        assert client.from_server == []
        denied, ran = results(events)
        assert denied["denied"] is True and "cannot be asked" in denied["content"][0]["text"]
        # An "auto" server's tool runs without asking.
        assert ran["isError"] is False and hub.calls == [("calc__add", {})]


async def test_an_approval_pending_at_end_of_input_is_denied() -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        await client.result("initialize", {"capabilities": {"approvals": True}})
        await start(client, "/call clock__now {}", ["clock"])
        await client.server_request()
        client.close_input()
        events = await client.collect_turn("c")
        (result,) = results(events)
        assert result["denied"] is True and hub.calls == []


async def test_a_server_that_cannot_start_is_reported_and_the_turn_goes_on() -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        await start(client, "/call calc__add {}", ["calc", "broken"])
        events = await client.collect_turn("c")
        failed = [e["event"] for e in events if e["event"]["type"] == "toolSourceFailed"]
        assert failed == [
            {
                "type": "toolSourceFailed",
                "server": "broken",
                "message": "cannot start no-such-command",
            }
        ]
        assert events[-1]["event"]["type"] == "turnComplete"
        assert events[-1]["event"]["lastAgentMessage"] == "add ran"


async def test_by_default_a_conversation_has_every_configured_server() -> None:
    hub = StandInHub()
    async with session(hub=hub) as client:
        configured = await client.result("newConversation", {"conversationId": "c"})
        assert "mcpServers" not in configured["sessionConfigured"]
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call calc__add {}")}
        )
        events = await client.collect_turn("c")
        assert events[-1]["event"]["lastAgentMessage"] == "add ran"
        # An empty choice means none: echo has no tool and echoes.
        await client.result("newConversation", {"conversationId": "d", "mcpServers": []})
        await client.result(
            "sendUserTurn", {"conversationId": "d", "input": text_input("/call calc__add {}")}
        )
        events = await client.collect_turn("d")
        assert events[-1]["event"]["lastAgentMessage"] == "/call calc__add {}"
