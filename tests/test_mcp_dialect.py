"""`convmgr mcp`'s behaviour, driven by the official SDK's ClientSession in memory (mcp_memory.py).

Every line the server writes in these tests is checked strictly against the
official types when the session ends. A turn that must stay running (busy,
cancel) waits in a tool of a stand-in MCP hub until the test lets it go:
nothing here waits for time to pass.
"""

import json
from collections.abc import Sequence
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp_memory import mcp_session, raw_session

from convmgr.dialects.mcp.tools import BY_NAME
from convmgr.dialects.mcp.wire import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from convmgr.model import McpServerSettings, ToolOutcome
from convmgr.tools.mcp import McpHub, McpTool

pytestmark = pytest.mark.anyio

TOOL_NAMES = [
    "conversation_start",
    "conversation_reply",
    "conversation_fork",
    "conversation_get",
    "conversation_list",
    "conversation_remove",
]


class HoldHub(McpHub):
    """MCP tool sources in memory: `hold__wait` runs until released; `clock__now` needs approval."""

    def __init__(self) -> None:
        super().__init__(
            {
                "hold": McpServerSettings("hold", "hold-server", approval="auto"),
                "clock": McpServerSettings("clock", "clock-server", approval="ask"),
            }
        )
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.calls: list[str] = []

    async def tools(self, servers: Sequence[str]) -> tuple[list[McpTool], list[tuple[str, str]]]:
        tools = {
            "hold": McpTool("hold", "wait", "hold__wait", "Waits.", {"type": "object"}),
            "clock": McpTool("clock", "now", "clock__now", "The time.", {"type": "object"}),
        }
        return [tools[s] for s in servers if s in tools], []

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append(tool.name)
        if tool.name == "clock__now":
            return ToolOutcome("12:00")
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        return ToolOutcome("released")


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """A result's structuredContent, checked against the tool's outputSchema either way."""
    assert result.structured_content is not None
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.structured_content


def check_output(tool: str, result: types.CallToolResult) -> None:
    """Success and error alike fit the tool's outputSchema (some clients check both)."""
    jsonschema.validate(result.structured_content, BY_NAME[tool]["outputSchema"])


async def call(session: Any, tool: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structuredContent."""
    result = await session.call_tool(tool, arguments, **kw)
    check_output(tool, result)
    assert not result.is_error, result.content[0].text
    return structured(result)


async def fail(session: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must fail; its structuredContent's error."""
    result = await session.call_tool(tool, arguments)
    check_output(tool, result)
    assert result.is_error
    error: dict[str, Any] = structured(result)["error"]
    assert result.content[0].text == error["message"]
    return error


# --- lifecycle -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [*HANDSHAKE_PROTOCOL_VERSIONS, "2099-01-01", "1"])
async def test_initialize_answers_the_clients_version_or_the_latest(version: str) -> None:
    async with raw_session() as raw:
        result = await raw.initialize(version)
    expected = version if version in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    assert result["protocolVersion"] == expected
    assert result["serverInfo"]["name"] == "convmgr"
    assert result["capabilities"] == {
        "tools": {"listChanged": False},
        "resources": {"subscribe": False, "listChanged": False},
    }
    assert "conversation_start" in result["instructions"]


async def test_the_handshake_comes_first_and_once() -> None:
    async with raw_session() as raw:
        assert (await raw.request("ping"))["result"] == {}
        early = await raw.request("tools/list")
        assert early["error"]["code"] == -32600
        assert "2025-11-25" in early["error"]["data"]["supported"]
        await raw.initialize()
        again = await raw.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "x", "version": "1"},
            },
        )
        assert again["error"]["code"] == -32600
        assert (await raw.request("ping"))["result"] == {}


@pytest.mark.parametrize(
    "params",
    [
        None,
        {"protocolVersion": "2025-11-25", "capabilities": {}},
        {"protocolVersion": 2025, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
        {
            "protocolVersion": "2025-11-25",
            "capabilities": [],
            "clientInfo": {"name": "x", "version": "1"},
        },
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x"}},
    ],
)
async def test_bad_initialize_params_are_invalid_params(params: Any) -> None:
    async with raw_session() as raw:
        answer = await raw.request("initialize", params)
        assert answer["error"]["code"] == -32602
        # Still not initialized: the handshake can be done right.
        assert (await raw.initialize())["protocolVersion"] == "2025-11-25"


async def test_a_probe_of_the_stateless_revision_is_method_not_found() -> None:
    # What the SDK's mcp.Client sends first: it falls back to initialize on this answer.
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "x", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    async with raw_session() as raw:
        answer = await raw.request("server/discover", {"_meta": meta})
        assert answer["error"]["code"] == -32601
        assert (await raw.initialize())["protocolVersion"] == "2025-11-25"


async def test_unknown_methods_and_bad_params_are_protocol_errors() -> None:
    async with raw_session() as raw:
        await raw.initialize()
        assert (await raw.request("prompts/list"))["error"]["code"] == -32601
        assert (await raw.request("tools/call", {"arguments": {}}))["error"]["code"] == -32602
        assert (await raw.request("tools/list", {"cursor": 7}))["error"]["code"] == -32602
        assert (await raw.request("tools/list", {"cursor": "x"}))["error"]["code"] == -32602
        answer = await raw.request("resources/read", {"uri": "file:///etc/passwd"})
        assert answer["error"]["code"] == -32602
        # A notification is never answered, even a malformed one.
        await raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": []})
        assert (await raw.request("ping"))["result"] == {}


# --- tools -----------------------------------------------------------------------------


async def test_tools_list_pages_and_each_tool_has_both_schemas() -> None:
    async with mcp_session(tools_page=4) as (session, _):
        first = await session.list_tools()
        assert len(first.tools) == 4 and first.next_cursor is not None
        rest = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=first.next_cursor)
        )
        assert rest.next_cursor is None
    tools = [*first.tools, *rest.tools]
    assert [t.name for t in tools] == TOOL_NAMES
    for tool in tools:
        assert tool.input_schema["type"] == "object" and tool.description
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)


async def test_start_reply_fork_get_list_remove_on_echo() -> None:
    async with mcp_session() as (session, _):
        await session.list_tools()
        start = await session.call_tool(
            "conversation_start", {"prompt": "Hello there", "conversationId": "c"}
        )
        assert start.content[0].text == "Hello there"
        first = structured(start)
        assert first["conversationId"] == "c" and first["reply"] == "Hello there"
        second = await call(
            session, "conversation_reply", {"conversationId": "c", "prompt": "Again"}
        )
        assert second["reply"] == "Again" and second["turnId"] != first["turnId"]
        fork = await call(
            session, "conversation_fork", {"conversationId": "c", "dropLastMessages": 1}
        )
        info = await call(
            session, "conversation_get", {"conversationId": "c", "includeHistory": True}
        )
        assert info["historyLength"] == 4 and info["status"] == "idle" and info["loaded"]
        texts = [item["content"][0]["text"] for item in info["history"]]
        assert texts == ["Hello there", "Hello there", "Again", "Again"]
        forked = await call(
            session,
            "conversation_get",
            {"conversationId": fork["conversationId"], "includeHistory": True},
        )
        assert forked["forkedFrom"] == "c" and forked["historyLength"] == 2
        assert "history" not in await call(session, "conversation_get", {"conversationId": "c"})
        listed = await call(session, "conversation_list", {"limit": 1})
        assert len(listed["items"]) == 1 and listed["nextCursor"] is not None
        rest = await call(session, "conversation_list", {"cursor": listed["nextCursor"]})
        ids = {item["conversationId"] for item in listed["items"] + rest["items"]}
        assert ids == {"c", fork["conversationId"]}
        assert await call(session, "conversation_remove", {"conversationId": "c"}) == {
            "removed": True
        }
        again = await call(session, "conversation_remove", {"conversationId": "c"})
        assert again == {"removed": False}
        # Unloaded, still stored: a reply resumes it first.
        third = await call(session, "conversation_reply", {"conversationId": "c", "prompt": "Back"})
        assert third["reply"] == "Back"
        deleted = await call(
            session, "conversation_remove", {"conversationId": "c", "deleteHistory": True}
        )
        assert deleted == {"removed": True}
        gone = await fail(session, "conversation_get", {"conversationId": "c"})
        assert gone["code"] == "not_found"


async def test_conversation_errors_are_tool_results() -> None:
    async with mcp_session() as (session, _):
        missing = {"conversationId": "nobody", "prompt": "hi"}
        assert (await fail(session, "conversation_reply", missing))["code"] == "not_found"
        fork_missing = await fail(session, "conversation_fork", {"conversationId": "nobody"})
        assert fork_missing["code"] == "not_found"
        await call(session, "conversation_start", {"prompt": "a", "conversationId": "taken"})
        taken = await fail(
            session, "conversation_start", {"prompt": "b", "conversationId": "taken"}
        )
        assert taken["code"] == "exists"
        provider = await fail(session, "conversation_start", {"prompt": "b", "provider": "nope"})
        assert provider["code"] == "invalid_arguments"
        cursor = await fail(session, "conversation_list", {"cursor": "not a cursor"})
        assert cursor["code"] == "invalid_arguments"


@pytest.mark.parametrize(
    ("tool", "arguments", "where"),
    [
        ("conversation_start", {}, "prompt: is required"),
        ("conversation_start", {"prompt": 3}, "prompt: must be a string"),
        (
            "conversation_start",
            {"prompt": "x", "conversationId": ".dot"},
            "conversationId: must match",
        ),
        ("conversation_start", {"prompt": "x", "temperature": 2}, "temperature: is not a known"),
        ("conversation_reply", {"conversationId": "c"}, "prompt: is required"),
        ("conversation_fork", {"conversationId": "c", "dropLastMessages": -1}, "at least 0"),
        ("conversation_fork", {"conversationId": "c", "dropLastMessages": True}, "an integer"),
        ("conversation_list", {"limit": 501}, "limit: must be at most 500"),
        ("conversation_get", {"conversationId": "x" * 129}, "at most 128 characters"),
        ("conversation_remove", {"conversationId": "c", "deleteHistory": "yes"}, "a boolean"),
    ],
)
async def test_bad_arguments_are_tool_results(tool: str, arguments: Any, where: str) -> None:
    async with mcp_session() as (session, _):
        error = await fail(session, tool, arguments)
    assert error["code"] == "invalid_arguments"
    assert where in error["message"]


async def test_an_unknown_tool_is_a_protocol_error() -> None:
    async with mcp_session() as (session, _):
        with pytest.raises(MCPError) as caught:
            await session.call_tool("conversation_explode", {})
    assert caught.value.error.code == -32602


async def test_progress_notifications_carry_the_reply_so_far_in_order() -> None:
    seen: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message))

    text = "one two three four"
    async with mcp_session() as (session, log):
        result = await call(
            session, "conversation_start", {"prompt": text}, progress_callback=progress
        )
        quiet = await call(
            session,
            "conversation_reply",
            {"conversationId": result["conversationId"], "prompt": "x y"},
        )
    assert result["reply"] == text and quiet["reply"] == "x y"
    assert [message for _, message in seen] == ["one ", "two ", "three ", "four"]
    assert [value for value, _ in seen] == [4, 8, 14, 18]
    # Only the call that asked for progress gets it.
    sent = [json.loads(text) for direction, text in log.lines if direction == ">"]
    assert sum(m.get("method") == "notifications/progress" for m in sent) == 4


# --- turns that keep running -------------------------------------------------------------


async def test_a_reply_to_a_running_conversation_is_busy() -> None:
    hub = HoldHub()
    async with mcp_session(hub=hub) as (session, _):
        outcome: dict[str, Any] = {}

        async def first() -> None:
            arguments = {"prompt": "/call hold__wait {}", "conversationId": "c"}
            outcome.update(await call(session, "conversation_start", arguments))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await hub.started.wait()
            busy = await fail(session, "conversation_reply", {"conversationId": "c", "prompt": "x"})
            info = await call(session, "conversation_get", {"conversationId": "c"})
            hub.release.set()
    assert busy["code"] == "busy"
    assert info["status"] == "running"
    assert outcome["reply"] == "released"


async def test_cancelling_a_call_interrupts_its_turn_and_gets_no_answer() -> None:
    hub = HoldHub()
    async with mcp_session(hub=hub) as (session, log):
        async with anyio.create_task_group() as tg:

            async def start() -> None:
                arguments = {"prompt": "/call hold__wait {}", "conversationId": "c"}
                await session.call_tool("conversation_start", arguments)

            tg.start_soon(start)
            await hub.started.wait()
            # The SDK sends notifications/cancelled when a call is given up.
            tg.cancel_scope.cancel()
        await hub.cancelled.wait()
        # Removing waits for the turn's end: the aborted turn is stored by then.
        assert await call(session, "conversation_remove", {"conversationId": "c"}) == {
            "removed": True
        }
        info = await call(
            session, "conversation_get", {"conversationId": "c", "includeHistory": True}
        )
    (started,) = log.client_requests("tools/call")[:1]
    assert log.answers(started["id"]) == []
    cancels = [json.loads(t) for d, t in log.lines if d == "<" and "notifications/cancelled" in t]
    assert cancels and cancels[0]["params"]["requestId"] == started["id"]
    outputs = [item for item in info["history"] if item["type"] == "functionCallOutput"]
    assert outputs == [
        {"type": "functionCallOutput", "callId": "call_1_1", "output": "aborted", "isError": True}
    ]
    assert hub.release.is_set() is False


# --- approvals -------------------------------------------------------------------------


async def test_an_ask_tool_is_approved_through_elicitation() -> None:
    hub = HoldHub()
    asked: list[types.ElicitRequestParams] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"decision": "allowAlways"})

    async with mcp_session(hub=hub, elicitation_callback=elicit) as (session, _):
        arguments = {"prompt": "/call clock__now {}", "conversationId": "c"}
        first = await call(session, "conversation_start", arguments)
        second = await call(
            session, "conversation_reply", {"conversationId": "c", "prompt": "/call clock__now {}"}
        )
    assert first["reply"] == "12:00" and second["reply"] == "12:00"
    assert len(asked) == 1  # allowAlways: not asked again in that conversation
    assert "clock__now" in asked[0].message and "clock" in asked[0].message
    assert hub.calls == ["clock__now", "clock__now"]


@pytest.mark.parametrize(
    "answer",
    [
        types.ElicitResult(action="decline"),
        types.ElicitResult(action="cancel"),
        types.ElicitResult(action="accept", content={"decision": "deny"}),
        types.ElicitResult(action="accept", content={"decision": "maybe"}),
    ],
)
async def test_an_ask_tool_is_denied_unless_the_user_allows_it(answer: types.ElicitResult) -> None:
    hub = HoldHub()

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return answer

    async with mcp_session(hub=hub, elicitation_callback=elicit) as (session, _):
        result = await call(session, "conversation_start", {"prompt": "/call clock__now {}"})
    assert result["reply"].startswith("denied")
    assert hub.calls == []


async def test_a_host_without_elicitation_is_not_asked_and_the_call_is_denied() -> None:
    hub = HoldHub()
    async with mcp_session(hub=hub) as (session, log):
        result = await call(session, "conversation_start", {"prompt": "/call clock__now {}"})
    assert "cannot be asked" in result["reply"]
    assert hub.calls == []
    assert not any("elicitation/create" in text for _, text in log.lines)


# --- resources -----------------------------------------------------------------------------


async def test_resources_are_stored_conversations_newest_first_over_pages() -> None:
    async with mcp_session(resources_page=2) as (session, _):
        for n in range(5):
            await call(
                session, "conversation_start", {"prompt": f"number {n}", "conversationId": f"c{n}"}
            )
        await call(session, "conversation_reply", {"conversationId": "c1", "prompt": "latest"})
        pages = [await session.list_resources()]
        while pages[-1].next_cursor is not None:
            cursor = types.PaginatedRequestParams(cursor=pages[-1].next_cursor)
            pages.append(await session.list_resources(params=cursor))
        read = await session.read_resource("conversation://c1")
        templates = await session.list_resource_templates()
        with pytest.raises(MCPError) as missing:
            await session.read_resource("conversation://nobody")
    assert [len(page.resources) for page in pages] == [2, 2, 1]
    resources = [r for page in pages for r in page.resources]
    assert [r.name for r in resources] == ["c1", "c4", "c3", "c2", "c0"]
    assert all(str(r.uri) == f"conversation://{r.name}" for r in resources)
    assert resources[0].mime_type == "application/json" and resources[0].title == "number 1"
    (content,) = read.contents
    assert isinstance(content, types.TextResourceContents)
    body = json.loads(content.text)
    assert body["conversationId"] == "c1" and body["historyLength"] == 4
    assert [item["content"][0]["text"] for item in body["history"]][2:] == ["latest"] * 2
    (template,) = templates.resource_templates
    assert template.uri_template == "conversation://{conversationId}"
    assert missing.value.error.code == -32602
