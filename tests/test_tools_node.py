"""An editor-style client nobody here wrote: vscode-jsonrpc drives client tools over Content-Length.

tests/node/tool_client.mjs spawns `python -m convmgr --no-store`, connects with
vscode-jsonrpc's `createMessageConnection(StreamMessageReader, StreamMessageWriter)`,
answers `tool/call` with CallToolResults, listens to `conversation/event`, runs
one call, three parallel calls answered last to first, and a call it holds while
the turn is interrupted (vscode-jsonrpc's CancellationToken must fire on the
server's `$/cancelRequest`); it prints one JSON summary line, checked here.

Needs node and .ci/node/node_modules (`npm ci --prefix .ci/node`, which
.ci/run does): without them the test skips locally and fails under CI.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from client import server_env

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"
NODE_MODULES = ROOT / ".ci" / "node" / "node_modules"


def completed_with(part: dict[str, Any]) -> str:
    """A summary part's lastAgentMessage; its terminal event must be turnComplete."""
    terminal = part["terminal"]
    assert terminal["type"] == "turnComplete", terminal
    return str(terminal["lastAgentMessage"])


def node_or_skip() -> str:
    """The node binary; skips (fails under CI, which installs both) when it or the deps lack."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (NODE_MODULES / "vscode-jsonrpc").is_dir():
        missing = ".ci/node/node_modules is missing: run `npm ci --prefix .ci/node`"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (CI installs it in .ci/run)")
        pytest.skip(missing)
    assert node is not None
    return node


def test_vscode_jsonrpc_client_runs_tools_and_its_cancellation_token_fires(
    tmp_path: Path,
) -> None:
    node = node_or_skip()
    proc = subprocess.run(
        [node, str(NODE_DIR / "tool_client.mjs"), sys.executable, str(NODE_MODULES)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,  # `python -m convmgr` runs this checkout
        env=server_env(tmp_path, {"TOOL_CLIENT_TIMEOUT_MS": "60000"}),
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(lines[-1])
    assert summary["ok"] is True, summary

    assert summary["initialize"] == {
        "server": "convmgr",
        "tools": True,
        "serverRequests": ["tool/call", "approval/request"],
    }
    assert summary["configuredTools"] == ["lookup", "slow", "hold"]

    one = summary["one"]
    assert completed_with(one) == "value of k0"
    kinds = one["kinds"]
    assert kinds[0] == "turnStarted" and kinds[-1] == "turnComplete"
    assert kinds.index("toolCall") < kinds.index("toolResult") < kinds.index("agentMessage")

    parallel = summary["parallel"]
    assert parallel["answeredOrder"] == ["call_2_3", "call_2_2", "call_2_1"]
    # toolResult follows the answers' order; the model gets the outputs in its own.
    assert parallel["resultOrder"] == parallel["answeredOrder"]
    assert completed_with(parallel) == "slow k1\nslow k2\nslow k3"

    cancel = summary["cancel"]
    assert cancel["interrupt"] == {"interrupted": True}
    assert cancel["tokenFired"] == {"callId": "call_3_1", "isCancellationRequested": True}
    assert cancel["terminal"] == {"type": "turnAborted", "reason": "interrupted"}
    assert cancel["toolResults"] == [
        {
            "type": "toolResult",
            "callId": "call_3_1",
            "content": [{"type": "text", "text": "aborted"}],
            "isError": True,
        }
    ]
    # The handler's answer after the cancel was sent, logged and ignored; the
    # server kept serving.
    assert summary["lateAnswerLogged"] is True, summary["stderr"]
    assert summary["pingAfter"] == {}
    assert completed_with(summary["after"]) == "value of after"

    assert summary["toolCalls"] == [
        ["call_1_1", "lookup", "editor"],
        ["call_2_1", "slow", "editor"],
        ["call_2_2", "slow", "editor"],
        ["call_2_3", "slow", "editor"],
        ["call_3_1", "hold", "editor"],
        ["call_4_1", "lookup", "editor"],
    ]
    outputs = [item[1:] for item in summary["history"] if item[0] == "functionCallOutput"]
    assert outputs == [
        ["call_1_1", "value of k0", False],
        ["call_2_1", "slow k1", False],
        ["call_2_2", "slow k2", False],
        ["call_2_3", "slow k3", False],
        ["call_3_1", "aborted", True],
        ["call_4_1", "value of after", False],
    ]
    assert summary["seqErrors"] == []
    assert summary["exit"] == {"code": 0, "signal": None}
