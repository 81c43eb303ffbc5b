"""bench/bench_mcp.py runs end to end in its quick mode (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_mcp_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "mcp.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mcp.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in ("SDK ClientSession directly: p50", "McpHub.call: p90", "McpHub overhead, p50"):
        assert row in proc.stdout, row
    assert out.exists()
