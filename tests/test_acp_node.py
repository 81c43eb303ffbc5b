"""`convmgr acp` driven by the official Node SDK's client (@agentclientprotocol/sdk 1.9.0).

The SDK comes from .ci/node (`npm ci --prefix .ci/node`, as .ci/run does);
tests/acp_node_client.mjs runs the session and prints what it saw.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from client import server_env

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / ".ci" / "node" / "node_modules" / "@agentclientprotocol" / "sdk"
SCRIPT = Path(__file__).resolve().parent / "acp_node_client.mjs"


def test_a_session_through_the_node_sdk(tmp_path: Path) -> None:
    if shutil.which("node") is None or not SDK.exists():
        if not os.environ.get("CI") and shutil.which("node") is None:
            pytest.skip("node is not installed here")
        pytest.fail(f"{SDK} is missing: run `npm ci --prefix .ci/node` (as .ci/run does)")
    store = tmp_path / "store.sqlite3"
    done = subprocess.run(
        ["node", str(SCRIPT), str(SDK), sys.executable, str(store), str(tmp_path)],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["protocolVersion"] == 1 and seen["loadSession"] is True
    assert seen["stopReasons"] == ["end_turn", "end_turn"]
    assert seen["reply"].startswith(seen["text"])
    assert seen["statuses"] == ["pending", "in_progress", "completed"]
    assert seen["permissions"] == 1
    assert seen["writes"] == [str(tmp_path / "from-node.txt")]
    assert (tmp_path / "from-node.txt").read_text() == "written"
    assert seen["listed"] == sorted([seen["sessionId"], seen["forkId"]])
    assert seen["after"] == [seen["sessionId"]]
    assert seen["unknown"] == -32002
