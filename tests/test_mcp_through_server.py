"""MCP servers configured in the TOML, used by conversations through the real binary.

mcp-server-time (PyPI) and @modelcontextprotocol/server-filesystem (npm, from
.ci/node) run as convmgr's tool sources; the client drives turns with echo's
`/call` lines and answers `approval/request`.
"""

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from client import Client, text_input
from mcp_servers import FILESYSTEM_BIN, filesystem_server

Message = dict[str, Any]


def config(tmp_path: Path, root: Path | None = None, approval: str = "ask") -> Path:
    """A configuration with the time server (auto) and, given a root, the filesystem one."""
    lines = [
        "[mcp_servers.time]",
        f"command = {json.dumps(sys.executable)}",
        'args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]',
        'approval = "auto"',
    ]
    if root is not None:
        filesystem_server(root)  # skips or fails with the reason when npm's server is missing
        lines += [
            "[mcp_servers.files]",
            f"command = {json.dumps(str(FILESYSTEM_BIN))}",
            f"args = [{json.dumps(str(root))}]",
            f'approval = "{approval}"',
        ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def turn(client: Client, cid: str, text: str) -> list[Message]:
    client.result("sendUserTurn", {"conversationId": cid, "input": text_input(text)})
    return client.collect_turn(cid, timeout=60)


def of_type(events: list[Message], kind: str) -> list[Message]:
    return [e["event"] for e in events if e["event"]["type"] == kind]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "notes.txt").write_text("hello from a file\n", encoding="utf-8")
    return allowed


def test_a_conversation_calls_the_time_server(spawn, tmp_path: Path) -> None:
    client = spawn("--no-store", "--config", config(tmp_path))
    client.result("newConversation", {"conversationId": "c"})
    events = turn(client, "c", '/call time__get_current_time {"timezone": "UTC"}')
    (call,) = of_type(events, "toolCall")
    assert call["source"] == "mcp" and call["server"] == "time"
    assert call["tool"] == "get_current_time"
    (result,) = of_type(events, "toolResult")
    assert result["isError"] is False
    assert json.loads(result["content"][0]["text"])["timezone"] == "UTC"
    # A call the server rejects is a failed call; the turn goes on.
    events = turn(client, "c", '/call time__get_current_time {"timezone": "Not/AZone"}')
    (result,) = of_type(events, "toolResult")
    assert result["isError"] is True
    assert events[-1]["event"]["type"] == "turnComplete"
    client.close_stdin()
    assert client.wait() == 0


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_an_approval_is_asked_before_a_filesystem_read(
    spawn, tmp_path: Path, root: Path, decision: str
) -> None:
    client = spawn("--no-store", "--config", config(tmp_path, root))
    client.result("initialize", {"capabilities": {"approvals": True}})
    client.result("newConversation", {"conversationId": "c", "mcpServers": ["files"]})
    path = json.dumps(str(root / "notes.txt"))
    client.result(
        "sendUserTurn",
        {
            "conversationId": "c",
            "input": text_input(f'/call files__read_text_file {{"path": {path}}}'),
        },
    )
    request = client.server_request(timeout=60)
    assert request["method"] == "approval/request"
    assert request["params"]["server"] == "files" and request["params"]["source"] == "mcp"
    client.send({"jsonrpc": "2.0", "id": request["id"], "result": {"decision": decision}})
    events = client.collect_turn("c", timeout=60)
    (result,) = of_type(events, "toolResult")
    if decision == "allow":
        assert result["isError"] is False
        assert "hello from a file" in result["content"][0]["text"]
    else:
        assert result["isError"] is True and result["denied"] is True


def test_a_client_that_cannot_approve_gets_the_call_denied(
    spawn, tmp_path: Path, root: Path
) -> None:
    client = spawn("--no-store", "--config", config(tmp_path, root))
    client.result("newConversation", {"conversationId": "c", "mcpServers": ["files"]})
    events = turn(
        client, "c", '/call files__list_directory {"path": ' + json.dumps(str(root)) + "}"
    )
    (result,) = of_type(events, "toolResult")
    assert result["denied"] is True
    assert client.from_server == []


def test_a_server_that_cannot_start_is_reported_and_the_turn_goes_on(spawn, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mcp_servers.gone]\ncommand = "/nonexistent/mcp-server"\napproval = "auto"\n',
        encoding="utf-8",
    )
    client = spawn("--no-store", "--config", path)
    client.result("newConversation", {"conversationId": "c"})
    events = turn(client, "c", "/call gone__anything {}")
    (failed,) = of_type(events, "toolSourceFailed")
    assert failed["server"] == "gone" and "not found" in failed["message"]
    (result,) = of_type(events, "toolResult")
    assert result["isError"] and "unknown tool" in result["content"][0]["text"]
    assert events[-1]["event"]["type"] == "turnComplete"
