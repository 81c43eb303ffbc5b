"""The benchmark scripts run end to end in their quick mode (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE_ROWS = (
    "cold start",
    "getConversation pipelined",
    "newConversation",
    "echo stream",
    "RSS per idle conversation",
    "interrupt",
    "SIGTERM",
)
HTTP_ROWS = tuple(
    f"deltas, {kind}, {row}"
    for kind in ("openai-chat", "openai-responses")
    for row in ("back to back", "10 ms: deltas lost", "10 ms: added loop latency p99")
)
TOOLS_ROWS = (
    "tool round trip, p50",
    "server CPU per tool round",
    "tool calls/s, 20 conversations, no-store",
    "tool calls/s, 20 conversations, store",
)


@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("bench_core.py", CORE_ROWS),
        ("bench_http_e2e.py", HTTP_ROWS),
        ("bench_tools.py", TOOLS_ROWS),
    ],
)
def test_bench_quick_runs_and_prints_the_table(
    tmp_path: Path, script: str, rows: tuple[str, ...]
) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("measurement", "target", "measured", "result"):
        assert heading in proc.stdout
    for row in rows:
        assert row in proc.stdout, row
    assert "phase failed" not in proc.stdout
    assert out.exists()
