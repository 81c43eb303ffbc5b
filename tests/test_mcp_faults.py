"""McpHub's faults: servers that fail to start, die, hang or ignore signals; cancellation."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from mcp_servers import ROOT, ServerLog, collect_server_log, double_server, gone

from convmgr.model import McpServerSettings, ToolOutcome
from convmgr.tools.mcp import MAX_STARTS, McpHub, McpTool

pytestmark = pytest.mark.anyio


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    """The servers' stderr lines convmgr logs."""
    yield from collect_server_log()


def tool(name: str, server: str = "double") -> McpTool:
    """One of the test double's tools."""
    return McpTool(server, name, f"{server}__{name}", "", {})


def test_importing_and_opening_a_hub_does_not_import_the_sdk() -> None:
    code = (
        "import sys, anyio\n"
        "from convmgr.model import McpServerSettings\n"
        "from convmgr.tools.mcp import McpHub\n"
        "async def main():\n"
        "    async with McpHub({'a': McpServerSettings('a', 'true')}) as hub:\n"
        "        assert await hub.tools([]) == ([], [])\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


async def test_a_command_that_does_not_exist_is_started_at_most_three_times() -> None:
    async with McpHub({"ghost": McpServerSettings("ghost", "convmgr-no-such-server")}) as hub:
        messages = [(await hub.tools(["ghost"]))[1] for _ in range(MAX_STARTS + 2)]
    for start, failures in enumerate(messages[:MAX_STARTS], 1):
        assert failures == [
            ("ghost", f"command not found: convmgr-no-such-server (start {start} of 3)")
        ]
    for failures in messages[MAX_STARTS:]:
        assert failures == [
            ("ghost", "gave up after 3 starts: command not found: convmgr-no-such-server")
        ]


async def test_a_server_that_exits_at_start_names_its_exit_code_and_last_words() -> None:
    crash = McpServerSettings(
        "crash", sys.executable, ("-c", "import sys; sys.exit('no config file, giving up')")
    )
    async with McpHub({"crash": crash}) as hub:
        tools, failures = await hub.tools(["crash"])
    assert tools == []
    assert failures == [
        (
            "crash",
            "exited with code 1 before it was ready (start 1 of 3); "
            "stderr: no config file, giving up",
        )
    ]


async def test_a_server_that_does_not_answer_in_time_fails_to_start() -> None:
    silent = McpServerSettings(
        "silent", sys.executable, ("-c", "import time; time.sleep(60)"), startup_timeout_s=0.5
    )
    async with McpHub({"silent": silent}) as hub:
        _, failures = await hub.tools(["silent"])
    assert failures == [
        ("silent", "timed out after 0.5 s (start, initialize, tools/list) (start 1 of 3)")
    ]


async def test_an_unknown_server_and_a_closed_hub_are_failures() -> None:
    hub = McpHub({})
    assert await hub.tools(["x"]) == ([], [("x", "the MCP hub is not open")])
    async with hub:
        assert await hub.tools(["x"]) == (
            [],
            [("x", "no MCP server of that name is configured")],
        )
    outcome = await hub.call(tool("echo", "x"), {})
    assert outcome.is_error


async def test_tools_are_listed_across_pages_and_odd_names_are_mangled() -> None:
    async with McpHub({"double": double_server("double", "--pages", "2")}) as hub:
        tools, failures = await hub.tools(["double"])
    assert failures == []
    assert [(t.tool, t.name) for t in tools][-2:] == [
        ("env", "double__env"),
        ("odd.name", "double__odd_name"),
    ]
    assert len(tools) == 7


async def test_two_turns_asking_at_once_start_the_server_once(server_log: ServerLog) -> None:
    results = []
    async with McpHub({"double": double_server()}) as hub:

        async def ask() -> None:
            results.append(await hub.tools(["double"]))

        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            group.start_soon(ask)
        outcome = await hub.call(tool("echo"), {"x": 1})
    assert [len(tools) for tools, _ in results] == [7, 7]
    assert sum(line.startswith("MCP server double: pid ") for line in server_log.lines) == 1
    assert json.loads(outcome.text) == {"x": 1}


async def test_the_server_gets_the_minimal_environment_plus_its_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVMGR_TEST_SECRET_KEY", "sk-must-stay-home")
    settings = double_server(env=(("DOUBLE_SETTING", "on"),))
    async with McpHub({"double": settings}) as hub:
        await hub.tools(["double"])
        outcome = await hub.call(tool("env"), {})
    env = json.loads(outcome.text)
    assert env["DOUBLE_SETTING"] == "on"
    assert env["PATH"] == os.environ["PATH"]
    assert "CONVMGR_TEST_SECRET_KEY" not in env
    assert "sk-must-stay-home" not in outcome.text


async def test_a_json_rpc_error_is_a_failed_outcome() -> None:
    async with McpHub({"double": double_server()}) as hub:
        await hub.tools(["double"])
        outcome = await hub.call(tool("rpc_error"), {})
    assert outcome == ToolOutcome(
        "MCP server 'double' answered with error -32602: no such thing", True
    )


async def test_a_server_that_dies_mid_call_fails_the_call_and_is_started_again(
    server_log: ServerLog,
) -> None:
    async with McpHub({"double": double_server()}) as hub:
        await hub.tools(["double"])
        first = await server_log.pid("double")
        outcome = await hub.call(tool("die"), {})
        after_death = await hub.tools(["double"])
        restarted, failures = await hub.tools(["double"])
        again = await hub.call(tool("echo"), {"after": "restart"})
    assert outcome == ToolOutcome(
        "MCP server 'double' ended during the call: exited with code 3; stderr: dying", True
    )
    assert gone(first)
    assert after_death == ([], [("double", "exited with code 3 (start 1 of 3); stderr: dying")])
    assert failures == []
    assert len(restarted) == 7
    assert json.loads(again.text) == {"after": "restart"}


async def test_cancelling_a_call_tells_the_server_and_propagates_at_once(
    server_log: ServerLog,
) -> None:
    async with McpHub({"double": double_server()}) as hub:
        await hub.tools(["double"])
        cancelled_at = 0.0
        with anyio.CancelScope() as scope:

            async def cancel_once_running() -> None:
                nonlocal cancelled_at
                await server_log.wait_for("hang started")
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(cancel_once_running)
                await hub.call(tool("hang"), {})
                pytest.fail("the call returned instead of being cancelled")
        # The server's handler was cancelled: notifications/cancelled reached it.
        await server_log.wait_for("hang cancelled")
        outcome = await hub.call(tool("echo"), {"still": "there"})
    assert scope.cancelled_caught
    assert json.loads(outcome.text) == {"still": "there"}


async def test_a_call_past_tool_timeout_fails_and_is_cancelled_on_the_server(
    server_log: ServerLog,
) -> None:
    async with McpHub({"double": double_server(tool_timeout_s=0.5)}) as hub:
        await hub.tools(["double"])
        outcome = await hub.call(tool("hang"), {})
        await server_log.wait_for("hang cancelled")
    assert outcome == ToolOutcome("the call to MCP server 'double' timed out after 0.5 s", True)


@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "ignores-stdin-and-sigterm"])
async def test_hub_exit_ends_servers_within_a_second_with_a_call_in_flight(
    server_log: ServerLog, stubborn: bool
) -> None:
    flags = ("--stubborn",) if stubborn else ()
    running = "block started" if stubborn else "hang started"
    outcomes: list[ToolOutcome] = []
    hub = McpHub({"double": double_server("double", *flags)})
    async with anyio.create_task_group() as group, hub:
        await hub.tools(["double"])
        pid = await server_log.pid("double")

        async def call() -> None:
            outcomes.append(await hub.call(tool("block" if stubborn else "hang"), {}))

        group.start_soon(call)
        await server_log.wait_for(running)
    # Leaving the hub ended the server, even one that ignores stdin and SIGTERM (how
    # soon is bench/bench_mcp.py's to measure).
    assert gone(pid)
    assert outcomes == [ToolOutcome("MCP server 'double' was stopped during the call", True)]
    after = await hub.call(tool("echo"), {})
    assert after.is_error
