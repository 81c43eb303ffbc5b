"""bench/bench_mcp_server.py runs end to end in its quick mode (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_mcp_server_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "mcp_server.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_mcp_server.py"),
            "--quick",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in (
        "cold start -> convmgr mcp: initialize + tools/list, median",
        "cold start -> convmgr serve: initialize + listConversations, median",
        "import mcp_types",
        "conversation_reply, convmgr mcp, SDK ClientSession, p50",
        "sendUserTurn -> turnComplete, convmgr dialect, raw client, p50",
    ):
        assert row in proc.stdout, row
    assert "phase failed" not in proc.stdout
    assert out.exists()
