"""`convmgr mcp` as a process, driven by MCP clients nobody here wrote.

The official Python SDK (stdio_client + ClientSession, and mcp.Client, which
probes the stateless 2026 revision first) spawns convmgr through
tests/mcp_tee.py, which records every line both ways; each test then checks
everything convmgr wrote strictly against the official types. The MCP
Inspector's CLI (npm, installed into .ci/node by .ci/run) lists the tools and
calls one. A conversation started here is resumed by `convmgr serve` on the
same store. Nothing waits for time to pass: events and answers drive each step.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from client import Client, server_env, text_input
from mcp import Client as McpClient
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_wire_check import WireLog
from provider_config import write_provider_config

from convmgr.dialects.mcp.tools import TOOLS

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
TEE = Path(__file__).with_name("mcp_tee.py")
INSPECTOR = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector-cli"
TIMEOUT = 30.0


class Server:
    """How to spawn `convmgr mcp` through the recording relay, and what it wrote."""

    def __init__(self, tmp_path: Path, *flags: str) -> None:
        self.record = tmp_path / f"wire-{len(list(tmp_path.glob('wire-*')))}.txt"
        self.env = server_env(tmp_path)
        self.params = StdioServerParameters(
            command=sys.executable,
            args=[str(TEE), str(self.record), "--", sys.executable, "-m", "convmgr", "mcp", *flags],
            env=self.env,
        )

    def log(self) -> WireLog:
        """Both directions, as recorded (whole once the session has ended)."""
        log = WireLog()
        for line in self.record.read_text(encoding="utf-8").splitlines():
            direction, _, text = line.partition(" ")
            log.add(direction, text)
        return log


@asynccontextmanager
async def sdk_session(server: Server, **client: Any) -> AsyncIterator[ClientSession]:
    """stdio_client + ClientSession, initialized."""
    with anyio.fail_after(TIMEOUT):
        async with (
            stdio_client(server.params) as (read, write),
            ClientSession(read, write, **client) as session,
        ):
            await session.initialize()
            yield session


async def call(session: Any, tool: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A tool call that must succeed: its structuredContent."""
    result = await session.call_tool(tool, arguments, **kw)
    assert not result.is_error, result.content
    assert result.structured_content is not None and len(result.content) == 1
    return dict(result.structured_content)


async def test_the_sdk_client_session_drives_conversations_over_stdio(tmp_path: Path) -> None:
    server = Server(tmp_path, "--store", str(tmp_path / "c.sqlite3"))
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with sdk_session(server) as session:
        assert session.initialize_result is not None
        assert session.initialize_result.protocol_version == "2025-11-25"
        assert session.initialize_result.server_info.name == "convmgr"
        tools = await session.list_tools()
        assert [tool.name for tool in tools.tools][:2] == [
            "conversation_start",
            "conversation_reply",
        ]
        start = await call(
            session,
            "conversation_start",
            {"prompt": "Hello from the SDK", "conversationId": "sdk"},
            progress_callback=on_progress,
        )
        reply = await call(
            session, "conversation_reply", {"conversationId": "sdk", "prompt": "More"}
        )
        fork = await call(
            session, "conversation_fork", {"conversationId": "sdk", "dropLastMessages": 1}
        )
        info = await call(
            session, "conversation_get", {"conversationId": "sdk", "includeHistory": True}
        )
        listed = await call(session, "conversation_list", {})
        resource = await session.read_resource("conversation://sdk")
        resources = await session.list_resources()
        removed = await call(
            session, "conversation_remove", {"conversationId": fork["conversationId"]}
        )
        assert (await session.send_ping()) is not None
    assert start["reply"] == "Hello from the SDK" and reply["reply"] == "More"
    assert [message for _, message in progress] == ["Hello ", "from ", "the ", "SDK"]
    assert [value for value, _ in progress] == [6, 11, 15, 18]
    assert [item["content"][0]["text"] for item in info["history"]] == [
        "Hello from the SDK",
        "Hello from the SDK",
        "More",
        "More",
    ]
    assert {item["conversationId"] for item in listed["items"]} == {"sdk", fork["conversationId"]}
    (content,) = resource.contents
    assert isinstance(content, types.TextResourceContents)
    assert json.loads(content.text)["historyLength"] == 4
    assert resources.resources[0].name == fork["conversationId"]
    assert removed == {"removed": True}
    server.log().check()


async def test_cancelling_a_long_turn_interrupts_it_and_gets_no_answer(
    tmp_path: Path, fake_openai_url: str
) -> None:
    config = write_provider_config(tmp_path, fake_openai_url)
    server = Server(tmp_path, "--config", str(config), "--no-store")
    first_delta = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        first_delta.set()

    async with sdk_session(server) as session:
        async with anyio.create_task_group() as tg:

            async def long_turn() -> None:
                # 1,000 deltas 20 ms apart: twenty seconds unless interrupted.
                arguments = {"prompt": "go", "conversationId": "long", "model": "deltas:1000:20"}
                await session.call_tool(
                    "conversation_start", arguments, progress_callback=on_progress
                )

            tg.start_soon(long_turn)
            await first_delta.wait()
            tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        # Removing waits for the turn to end: it was interrupted, so it ends now.
        with anyio.fail_after(5):
            assert await call(session, "conversation_remove", {"conversationId": "long"}) == {
                "removed": True
            }
        info = await call(
            session, "conversation_get", {"conversationId": "long", "includeHistory": True}
        )
    log = server.log()
    log.check()
    (started, *_) = log.client_requests("tools/call")
    assert log.answers(started["id"]) == []
    reply = info["history"][-1]["content"][0]["text"]
    assert reply.startswith("w0 ") and len(reply.split()) < 1000


async def test_mcp_client_probes_the_stateless_revision_then_uses_the_handshake(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, "--no-store")
    with anyio.fail_after(TIMEOUT):
        async with McpClient(server.params) as client:
            assert client.protocol_version == "2025-11-25"
            names = [tool.name for tool in (await client.list_tools()).tools]
            start = await client.call_tool(
                "conversation_start", {"prompt": "probe", "conversationId": "p"}
            )
            reply = await client.call_tool(
                "conversation_reply", {"conversationId": "p", "prompt": "ok"}
            )
            got = await client.call_tool(
                "conversation_get", {"conversationId": "p", "includeHistory": True}
            )
            read = await client.read_resource("conversation://p")
    assert len(names) == 6
    assert start.structured_content is not None and start.structured_content["reply"] == "probe"
    assert reply.structured_content is not None and reply.structured_content["reply"] == "ok"
    assert got.structured_content is not None and got.structured_content["historyLength"] == 4
    assert read.contents
    log = server.log()
    log.check()
    (probe,) = log.client_requests("server/discover")
    (initialize,) = log.client_requests("initialize")
    assert log.answers(probe["id"])[0]["error"]["code"] == -32601
    order = [json.loads(text).get("method") for direction, text in log.lines if direction == "<"]
    assert order.index("server/discover") < order.index("initialize")
    assert log.answers(initialize["id"])[0]["result"]["protocolVersion"] == "2025-11-25"


async def test_resources_list_across_pages_over_stdio(tmp_path: Path) -> None:
    server = Server(tmp_path, "--store", str(tmp_path / "c.sqlite3"))
    async with sdk_session(server) as session:
        for n in range(51):
            await call(
                session, "conversation_start", {"prompt": f"n{n}", "conversationId": f"c{n:02}"}
            )
        first = await session.list_resources()
        assert first.next_cursor is not None
        second = await session.list_resources(
            params=types.PaginatedRequestParams(cursor=first.next_cursor)
        )
    assert len(first.resources) == 50 and second.next_cursor is None
    names = [r.name for r in [*first.resources, *second.resources]]
    assert names == [f"c{n:02}" for n in reversed(range(51))]
    server.log().check()


async def test_an_ask_mcp_server_is_approved_through_elicitation_over_stdio(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""[mcp_servers.time]
command = {json.dumps(sys.executable)}
args = ["-m", "mcp_server_time"]
approval = "ask"
""",
        encoding="utf-8",
    )
    server = Server(tmp_path, "--config", str(config), "--no-store")
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"decision": "allow"})

    async with sdk_session(server, elicitation_callback=elicit) as session:
        prompt = '/call time__get_current_time {"timezone": "UTC"}'
        result = await call(session, "conversation_start", {"prompt": prompt})
    assert len(asked) == 1 and "time__get_current_time" in asked[0]
    assert json.loads(result["reply"])["timezone"] == "UTC"
    log = server.log()
    log.check()
    assert any(
        json.loads(t).get("method") == "elicitation/create" for d, t in log.lines if d == ">"
    )


async def test_a_conversation_started_through_mcp_is_resumed_by_convmgr_serve(
    tmp_path: Path, spawn: Any
) -> None:
    store = tmp_path / "shared.sqlite3"
    server = Server(tmp_path, "--store", str(store))
    async with sdk_session(server) as session:
        await call(
            session, "conversation_start", {"prompt": "Started in MCP", "conversationId": "m"}
        )
    serve: Client = spawn("--store", store)
    listed = serve.result("listConversations", {})
    assert [item["conversationId"] for item in listed["items"]] == ["m"]
    serve.result("resumeConversation", {"conversationId": "m"})
    serve.result("sendUserTurn", {"conversationId": "m", "input": text_input("And in serve")})
    events = serve.collect_turn("m")
    assert events[-1]["event"]["type"] == "turnComplete"
    history = serve.result("getConversation", {"conversationId": "m", "includeHistory": True})
    assert history["historyLength"] == 4
    serve.close_stdin()
    assert serve.wait() == 0
    # And back: the turn serve added is there for MCP too.
    async with sdk_session(Server(tmp_path, "--store", str(store))) as session:
        again = await call(session, "conversation_reply", {"conversationId": "m", "prompt": "Back"})
        info = await call(session, "conversation_get", {"conversationId": "m"})
    assert again["reply"] == "Back" and info["historyLength"] == 6


async def test_a_conversation_started_through_mcp_is_resumed_by_convmgr_acp(
    tmp_path: Path, spawn: Any
) -> None:
    store = tmp_path / "shared.sqlite3"
    async with sdk_session(Server(tmp_path, "--store", str(store))) as session:
        await call(
            session, "conversation_start", {"prompt": "Started in MCP", "conversationId": "m"}
        )
    # An editor: raw ACP lines (not checked as the convmgr dialect's).
    editor: Client = spawn("acp", "--store", store, validate=False)
    editor.result("initialize", {"protocolVersion": 1})
    listed = editor.result("session/list", {})
    assert [item["sessionId"] for item in listed["sessions"]] == ["m"]
    editor.result("session/resume", {"sessionId": "m", "cwd": str(tmp_path), "mcpServers": []})
    answer = editor.result(
        "session/prompt", {"sessionId": "m", "prompt": [{"type": "text", "text": "And in ACP"}]}
    )
    assert answer["stopReason"] == "end_turn"
    editor.close_stdin()
    assert editor.wait() == 0
    async with sdk_session(Server(tmp_path, "--store", str(store))) as session:
        info = await call(session, "conversation_get", {"conversationId": "m"})
    assert info["historyLength"] == 4


# --- the MCP Inspector's CLI -------------------------------------------------------------


def inspector(tmp_path: Path, *method: str) -> Any:
    """Run the Inspector's CLI against `convmgr mcp --no-store`; its JSON output."""
    if not INSPECTOR.exists():
        if shutil.which("npm") is None and not os.environ.get("CI"):
            pytest.skip("npm is not installed here, so .ci/node holds no MCP Inspector")
        pytest.fail(f"{INSPECTOR} is missing: run `npm ci --prefix .ci/node` (as .ci/run does)")
    env = server_env(tmp_path)
    # The server gets the Inspector's minimal environment plus these (-e).
    passed = [
        f"{name}={env[name]}"
        for name in ("PYTHONPATH", "CONVMGR_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")
        if name in env
    ]
    command = [str(INSPECTOR), "--cli"]
    for pair in passed:
        command += ["-e", pair]
    command += [sys.executable, "-m", "convmgr", "mcp", "--no-store", *method]
    # inspector-cli 1.0.3 finds its own package.json through "../package.json" from
    # the working directory: run it where that is its own.
    cwd = INSPECTOR.resolve().parent
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_the_inspector_cli_lists_the_tools(tmp_path: Path) -> None:
    listed = inspector(tmp_path, "--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert list(tools) == [tool["name"] for tool in TOOLS]
    assert all("outputSchema" in tool and "inputSchema" in tool for tool in tools.values())


def test_the_inspector_cli_calls_a_tool(tmp_path: Path) -> None:
    called = inspector(
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "conversation_start",
        "--tool-arg",
        "prompt=Hello from the Inspector",
    )
    assert called["content"] == [{"type": "text", "text": "Hello from the Inspector"}]
    assert called["structuredContent"]["reply"] == "Hello from the Inspector"
    failed = inspector(
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "conversation_reply",
        "--tool-arg",
        "conversationId=nobody",
        "prompt=hi",
    )
    assert failed["isError"] is True
    assert failed["structuredContent"]["error"]["code"] == "not_found"


# --- the README's set-up ------------------------------------------------------------------


def readme_section() -> str:
    """The README's "Use it from an MCP host" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Use it from an MCP host")
    return text[start : text.index("\n## ", start + 1)]


def host_snippets() -> list[dict[str, Any]]:
    """Each server entry of the section's JSON snippets (mcpServers, or VS Code's servers)."""
    blocks = readme_section().split("```json\n")[1:]
    entries = []
    for block in blocks:
        config = json.loads(block.split("```", 1)[0])
        servers = config.get("mcpServers") or config["servers"]
        entries.extend(servers.values())
    return entries


@pytest.mark.parametrize("entry", host_snippets(), ids=lambda e: " ".join(e["args"]))
async def test_the_readme_host_snippets_start_a_working_server(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    assert entry["command"] == "convmgr" and entry["args"][0] == "mcp"
    assert entry.get("type", "stdio") == "stdio"
    server = Server(tmp_path, *entry["args"][1:], "--no-store")
    server.env.update(entry.get("env", {}))
    async with sdk_session(server) as session:
        tools = await session.list_tools()
        assert len(tools.tools) == 6
    server.log().check()


def test_the_readme_inspector_one_liner_calls_a_tool(tmp_path: Path) -> None:
    (command,) = [
        line
        for line in readme_section().splitlines()
        if line.startswith("npx @modelcontextprotocol/inspector --cli convmgr mcp")
    ]
    # The full Inspector needs Node 22; its CLI flags are inspector-cli's (installed here).
    flags = shlex.split(command)[
        len(shlex.split("npx @modelcontextprotocol/inspector --cli convmgr mcp")) :
    ]
    flags.remove("--no-store")  # inspector() passes it
    called = inspector(tmp_path, *flags)
    assert called["structuredContent"]["reply"] == "Hello from the Inspector"
