"""Real MCP servers nobody here wrote, over stdio: mcp-server-time and the npm filesystem one."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_servers import ServerLog, collect_server_log, filesystem_server, gone, time_server

from convmgr.tools.mcp import McpHub, McpTool

pytestmark = pytest.mark.anyio


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    """The servers' stderr lines convmgr logs."""
    yield from collect_server_log()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The one directory the filesystem server may touch, with a file in it."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "notes.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    return allowed


def by_name(tools: list[McpTool]) -> dict[str, McpTool]:
    """The tools by the name the model sees."""
    return {tool.name: tool for tool in tools}


async def test_time_server_tools_are_named_server__tool() -> None:
    async with McpHub({"time": time_server()}) as hub:
        tools, failures = await hub.tools(["time"])
    assert failures == []
    named = by_name(tools)
    assert set(named) == {"time__get_current_time", "time__convert_time"}
    current = named["time__get_current_time"]
    assert (current.server, current.tool) == ("time", "get_current_time")
    assert current.description
    assert "timezone" in current.input_schema["properties"]


async def test_time_server_answers_a_call() -> None:
    async with McpHub({"time": time_server()}) as hub:
        tools, _ = await hub.tools(["time"])
        outcome = await hub.call(by_name(tools)["time__get_current_time"], {"timezone": "UTC"})
    assert not outcome.is_error
    assert json.loads(outcome.text)["timezone"] == "UTC"


async def test_time_server_rejecting_a_timezone_is_a_failed_outcome() -> None:
    async with McpHub({"time": time_server()}) as hub:
        tools, _ = await hub.tools(["time"])
        tool = by_name(tools)["time__get_current_time"]
        outcome = await hub.call(tool, {"timezone": "Nowhere/Atlantis"})
        # The server is still there for the next call.
        again = await hub.call(tool, {"timezone": "Europe/Paris"})
    assert outcome.is_error
    assert "Invalid timezone" in outcome.text
    assert not again.is_error


async def test_a_json_rpc_error_from_the_server_is_a_failed_outcome() -> None:
    async with McpHub({"time": time_server()}) as hub:
        await hub.tools(["time"])
        # mcp-server-time answers an unknown tool with JSON-RPC -32602.
        ghost = McpTool("time", "no_such_tool", "time__no_such_tool", "", {})
        outcome = await hub.call(ghost, {})
    assert outcome.is_error
    assert "error -32602" in outcome.text
    assert "no_such_tool" in outcome.text


async def test_filesystem_server_reads_a_file_and_lists_a_directory(root: Path) -> None:
    async with McpHub({"files": filesystem_server(root)}) as hub:
        tools, failures = await hub.tools(["files"])
        named = by_name(tools)
        read = await hub.call(named["files__read_text_file"], {"path": str(root / "notes.txt")})
        listing = await hub.call(named["files__list_directory"], {"path": str(root)})
    assert failures == []
    assert {"files__read_text_file", "files__list_directory", "files__write_file"} <= set(named)
    assert not read.is_error
    assert read.text == "first line\nsecond line\n"
    assert not listing.is_error
    assert "notes.txt" in listing.text


async def test_filesystem_server_refuses_a_path_outside_its_directory(
    root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the model", encoding="utf-8")
    async with McpHub({"files": filesystem_server(root)}) as hub:
        tools, _ = await hub.tools(["files"])
        outcome = await hub.call(by_name(tools)["files__read_text_file"], {"path": str(secret)})
    assert outcome.is_error
    assert "not for the model" not in outcome.text
    assert "outside allowed directories" in outcome.text


async def test_enabled_tools_is_an_allow_list(root: Path) -> None:
    servers = {
        "files": filesystem_server(root, enabled_tools=("read_text_file", "list_directory")),
        "time": time_server(enabled_tools=("convert_time",)),
    }
    async with McpHub(servers) as hub:
        tools, failures = await hub.tools(["files", "time"])
    assert failures == []
    assert [tool.name for tool in tools] == [
        "files__read_text_file",
        "files__list_directory",
        "time__convert_time",
    ]


async def test_both_servers_start_together_and_stay_up_between_calls(root: Path) -> None:
    async with McpHub({"files": filesystem_server(root), "time": time_server()}) as hub:
        first, _ = await hub.tools(["time", "files"])
        again, failures = await hub.tools(["files", "time"])
        outcome = await hub.call(by_name(again)["time__get_current_time"], {"timezone": "UTC"})
    assert failures == []
    assert {tool.name for tool in first} == {tool.name for tool in again}
    assert not outcome.is_error


async def test_server_stderr_goes_to_the_log_never_to_stdout(
    root: Path, server_log: ServerLog, capfd: pytest.CaptureFixture[str]
) -> None:
    async with McpHub({"files": filesystem_server(root)}) as hub:
        await hub.tools(["files"])
        # server-filesystem says so on stderr when it starts.
        line = await server_log.wait_for("running on stdio")
    assert line.startswith("MCP server files: ")
    out, err = capfd.readouterr()
    assert "running on stdio" not in out
    assert "running on stdio" not in err


def children() -> set[int]:
    """The pids of this process's children (from /proc)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry))
    return found


async def test_hub_exit_ends_the_servers(root: Path) -> None:
    before = children()
    async with McpHub({"files": filesystem_server(root), "time": time_server()}) as hub:
        _, failures = await hub.tools(["files", "time"])
        assert failures == []
        servers = children() - before
        assert len(servers) >= 2
    # Every server is gone once the hub is left (how soon is bench/bench_mcp.py's to measure).
    assert not any(not gone(pid) for pid in servers)
