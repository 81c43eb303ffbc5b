"""The core benchmark runs end to end in its quick mode (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_core.py"


def test_bench_core_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("measurement", "target", "measured", "result"):
        assert heading in proc.stdout
    for row in (
        "cold start",
        "getConversation pipelined",
        "newConversation",
        "echo stream",
        "RSS per idle conversation",
        "interrupt",
        "SIGTERM",
    ):
        assert row in proc.stdout, row
    assert out.exists()
