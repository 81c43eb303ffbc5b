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
    run_quick(tmp_path, script, rows)


def run_quick(tmp_path: Path, script: str, rows: tuple[str, ...], timeout: float = 120) -> None:
    """Run `script --quick`: it succeeds, prints the table with these rows, writes its JSON."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("measurement", "target", "measured", "result"):
        assert heading in proc.stdout
    for row in rows:
        assert row in proc.stdout, row
    assert "phase failed" not in proc.stdout
    assert out.exists()


POSTGRES_ROWS = (
    "echo turns/s, 10 conversations, sqlite",
    "echo turns/s, 10 conversations, postgres",
    "listConversations 50 of",
    "resumeConversation",
    "getConversation page of",
    "slow db: ping p99, db packets +50 ms",
    "slow db: getConversation of another p99, no delay",
)


def test_bench_postgres_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    """bench_postgres.py starts its own PostgreSQL server: skipped without one, except in CI."""
    import os

    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import bin_dir

    if bin_dir() is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    run_quick(tmp_path, "bench_postgres.py", POSTGRES_ROWS, timeout=180)
