#!/usr/bin/env python3
"""`convmgr acp` against `convmgr serve`: the first answers, and the cost of a streamed chunk.

    python bench/bench_acp.py [--runs N] [--rounds N] [--json PATH]

1. Start-up: spawn → `initialize` and `session/new` answered (written back to
   back, as editors do), against `convmgr serve`'s `initialize` +
   `newConversation`; each run a fresh process and a fresh store, the two
   commands alternating. Target: ACP within 1.2x of serve (medians).
2. Streaming: an echo prompt of 2,000 words. `agent_message_chunk`
   notifications/s as the official Python SDK's client receives them, and
   convmgr's CPU (utime + stime from /proc, over several prompts) per chunk,
   against its CPU per `agentMessageDelta` in the convmgr dialect with a raw
   client. Target: <= 1.5x.

3. Cancel: the model asks for `write_file`, the editor holds the permission
   request, and `session/cancel` is sent; from writing it to the prompt's
   answer (`stopReason: cancelled`), over the SDK client. Target: 100 ms.

Every figure is a median over rounds, with the spread (min-max) as its noise.
A script, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORDS = 2_000
PROMPTS = 50  # per round: the CPU figure needs many 10 ms ticks of /proc accounting


def env_for(home: Path) -> dict[str, str]:
    """No user configuration: only echo; the checkout's convmgr first on the path."""
    env = dict(os.environ)
    env.pop("CONVMGR_CONFIG", None)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["CONVMGR_HOME"] = str(home / "home")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- 1. start-up ------------------------------------------------------------------------


def first_answers(acp: bool, home: Path) -> float:
    """Seconds from spawn to the second answer."""
    store = home / f"store-{time.monotonic_ns()}.sqlite3"
    if acp:
        args = ["acp", "--store", str(store)]
        lines = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}},
            {"jsonrpc": "2.0", "id": 2, "method": "session/new",
             "params": {"cwd": str(home), "mcpServers": []}},
        ]
    else:
        args = ["--store", str(store)]
        lines = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "newConversation", "params": {}},
        ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(home),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    answered = 0
    while answered < 2:
        line = proc.stdout.readline()
        assert line, "the server ended early"
        if b'"id":' in line and b'"method"' not in line:
            answered += 1
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    proc.wait()
    return elapsed


# --- 2. streaming -------------------------------------------------------------------------


def prompt_text() -> str:
    return " ".join(f"w{n}" for n in range(WORDS))


async def acp_round(home: Path) -> tuple[float, float]:
    """(chunks/s at the SDK client, convmgr CPU seconds per chunk) over PROMPTS prompts."""
    import acp
    from acp import text_block

    class Editor:
        chunks = 0

        async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
            if update.session_update == "agent_message_chunk":
                Editor.chunks += 1

        def on_connect(self, conn: Any) -> None:
            return None

    editor = Editor()
    async with acp.spawn_agent_process(
        editor, sys.executable, "-m", "convmgr", "acp", "--no-store", env=env_for(home)
    ) as (conn, process):
        await conn.initialize(protocol_version=1)
        sid = (await conn.new_session(cwd=str(home), mcp_servers=[])).session_id
        await conn.prompt(session_id=sid, prompt=[text_block("warm up")])
        Editor.chunks = 0
        text = prompt_text()
        cpu0, t0 = cpu_seconds(process.pid), time.perf_counter()
        for _ in range(PROMPTS):
            await conn.prompt(session_id=sid, prompt=[text_block(text)])
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(process.pid) - cpu0
    assert Editor.chunks == WORDS * PROMPTS, Editor.chunks
    return Editor.chunks / elapsed, cpu / Editor.chunks


async def cancel_round(home: Path, prompts: int) -> list[float]:
    """Seconds from session/cancel to the cancelled prompt's answer, `prompts` times."""
    import acp
    from acp import schema as s
    from acp import text_block

    class Editor:
        asked: asyncio.Event

        async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
            Editor.asked.set()
            await asyncio.Event().wait()  # never decides: the cancel must end the turn

        async def session_update(self, *args: Any, **kwargs: Any) -> None:
            return None

        def on_connect(self, conn: Any) -> None:
            return None

    capabilities = s.ClientCapabilities(
        fs=s.FileSystemCapabilities(read_text_file=True, write_text_file=True)
    )
    times = []
    async with acp.spawn_agent_process(
        Editor(), sys.executable, "-m", "convmgr", "acp", "--no-store", env=env_for(home)
    ) as (conn, _process):
        await conn.initialize(protocol_version=1, client_capabilities=capabilities)
        sid = (await conn.new_session(cwd=str(home), mcp_servers=[])).session_id
        text = '/call write_file {"path": "%s", "content": "x"}' % (home / "f.txt")
        for _ in range(prompts):
            Editor.asked = asyncio.Event()
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=sid, prompt=[text_block(text)])
            )
            await Editor.asked.wait()
            started = time.perf_counter()
            await conn.cancel(session_id=sid)
            answer = await prompt
            times.append(time.perf_counter() - started)
            assert answer.stop_reason == "cancelled", answer
    return times


def convmgr_round(home: Path) -> float:
    """convmgr CPU seconds per agentMessageDelta over PROMPTS turns (a raw client)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", "--no-store"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(home),
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(obj: Any) -> None:
        proc.stdin.write((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def turn(n: int, text: str) -> int:
        send({"id": 100 + n, "method": "sendUserTurn",
              "params": {"conversationId": "b", "input": [{"type": "text", "text": text}]}})
        deltas = 0
        while True:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            deltas += line.count(b'"agentMessageDelta"')
            if b'"turnComplete"' in line:
                return deltas

    send({"id": 1, "method": "newConversation", "params": {"conversationId": "b"}})
    turn(0, "warm up")
    text = prompt_text()
    cpu0 = cpu_seconds(proc.pid)
    deltas = sum(turn(n + 1, text) for n in range(PROMPTS))
    cpu = cpu_seconds(proc.pid) - cpu0
    proc.stdin.close()
    proc.wait()
    assert deltas == WORDS * PROMPTS, deltas
    return cpu / deltas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="start-up runs of each command")
    parser.add_argument("--rounds", type=int, default=5, help="streaming rounds of each dialect")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        acp_start: list[float] = []
        serve_start: list[float] = []
        for _ in range(args.runs):
            acp_start.append(first_answers(True, home))
            serve_start.append(first_answers(False, home))
        rates, acp_cpu, convmgr_cpu = [], [], []
        for _ in range(args.rounds):
            rate, cpu = asyncio.run(acp_round(home))
            rates.append(rate)
            acp_cpu.append(cpu)
            convmgr_cpu.append(convmgr_round(home))
        cancels = asyncio.run(cancel_round(home, 100))
    ratios = [a / c for a, c in zip(acp_cpu, convmgr_cpu, strict=True)]
    figures = {
        "startup_acp_s": spread(acp_start),
        "startup_serve_s": spread(serve_start),
        "startup_ratio": statistics.median(acp_start) / statistics.median(serve_start),
        "chunks_per_s_at_sdk_client": spread(rates),
        "cpu_per_chunk_us": spread([c * 1e6 for c in acp_cpu]),
        "cpu_per_delta_us": spread([c * 1e6 for c in convmgr_cpu]),
        "cpu_ratio": spread(ratios),
        "cancel_to_answer_ms": spread([c * 1000 for c in cancels]),
    }
    for name, value in figures.items():
        if isinstance(value, dict):
            print(f"{name:28} median {value['median']:.4g}  (min {value['min']:.4g}, "
                  f"max {value['max']:.4g})")
        else:
            print(f"{name:28} {value:.3f}")
    print(f"targets: startup_ratio <= 1.2 ({figures['startup_ratio']:.2f}); "
          f"cpu_ratio median <= 1.5 ({figures['cpu_ratio']['median']:.2f}); "
          f"cancel_to_answer_ms max <= 100 ({figures['cancel_to_answer_ms']['max']:.1f})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
