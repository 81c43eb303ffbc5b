"""The end-to-end HTTP provider benchmark runs in its quick mode (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_http_e2e.py"


def test_bench_http_e2e_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "http_e2e.json"
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
    for kind in ("openai-chat", "openai-responses"):
        assert f"deltas, {kind}, back to back" in proc.stdout
        assert f"deltas, {kind}, 10 ms: deltas lost" in proc.stdout
        assert f"deltas, {kind}, 10 ms: added loop latency p99" in proc.stdout
    assert "phase failed" not in proc.stdout
    assert out.exists()
