#!/usr/bin/env python3
"""`convmgr mcp` against `convmgr serve`: cold start, and a turn's round trip.

    python bench/bench_mcp_server.py [--quick] [--json PATH]

1. Cold start, as hosts do it: spawn, `initialize`, then (once it is answered)
   `notifications/initialized` + `tools/list`, until that is answered; against
   `convmgr serve`'s `initialize` + `listConversations`, same lock-step. Runs
   alternate between the commands so that both see the same machine. Two
   references for the build decision (docs/architecture.md): `convmgr mcp`
   with `mcp_types` imported first (what validating with the official pydantic
   models at start-up would cost), and the SDK's own low-level `Server` on
   stdio listing the same six tools. Each row gives the median and, as its
   noise, the p25-p75 range.
2. Import times of the candidates (`python -c "import X"` minus `python -c pass`).
3. `conversation_reply` on echo, lock-step: through the official SDK
   (stdio_client + ClientSession), through a raw client on `convmgr mcp`, and
   the same turn in the convmgr dialect (sendUserTurn until turnComplete) with
   a raw client; rounds alternate between the three. The noise is the range
   of the p50s of five blocks of rounds.

Prints a table and writes JSON to bench/results/mcp_server.json. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import Row, finish_report, pct, precompile, server_env  # a sibling script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "mcp_server.json"

INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}

# The SDK's low-level Server with convmgr's six tools: the other way to build it.
SDK_SERVER = """
import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from convmgr.dialects.mcp.tools import TOOLS

tools = [types.Tool.model_validate(tool) for tool in TOOLS]

async def list_tools(ctx, params):
    return types.ListToolsResult(tools=tools)

server = Server("sdk-reference", on_list_tools=list_tools)

async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""

MCP_TYPES_FIRST = (
    "import sys, mcp_types; from convmgr.cli import main; sys.exit(main(sys.argv[1:]))"
)


def line(msg_id: int | None, method: str, params: dict[str, Any] | None = None) -> bytes:
    """One JSON-RPC message, as a line."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if msg_id is not None:
        message["id"] = msg_id
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


class Pipe:
    """A spawned server's stdin and a line reader on its stdout."""

    def __init__(self, command: list[str], env: dict[str, str], stderr: IO[bytes], cwd: str):
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buffer = b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def read_line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise RuntimeError("the server ended its output")
            self.buffer += chunk
        found, _, self.buffer = self.buffer.partition(b"\n")
        return found

    def read_until(self, marker: bytes) -> bytes:
        while True:
            found = self.read_line()
            if marker in found:
                return found

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


# --- 1. cold start ----------------------------------------------------------------------------


def mcp_handshake(pipe: Pipe) -> None:
    pipe.write(line(1, "initialize", INITIALIZE))
    pipe.read_until(b'"id":1')
    pipe.write(line(None, "notifications/initialized") + line(2, "tools/list"))
    found = pipe.read_until(b'"id":2')
    assert b"conversation_start" in found, found[:200]


def serve_handshake(pipe: Pipe) -> None:
    pipe.write(line(1, "initialize", {"clientInfo": {"name": "bench"}}))
    pipe.read_until(b'"id":1')
    pipe.write(line(2, "listConversations"))
    found = pipe.read_until(b'"id":2')
    assert b'"items"' in found, found[:200]


class Bench:
    def __init__(self, workdir: str, quick: bool) -> None:
        self.workdir = workdir
        self.quick = quick
        self.env = server_env(workdir)
        self.env["PYTHONPATH"] = str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.name}: {row.value} {row.unit} {row.note}", flush=True)

    def spawn(self, command: list[str]) -> Pipe:
        with open(self.stderr_path, "ab") as stderr:
            return Pipe(command, self.env, stderr, self.workdir)

    def cold(self, command: list[str], handshake: Callable[[Pipe], None]) -> float:
        started = time.perf_counter()
        pipe = self.spawn(command)
        handshake(pipe)
        elapsed = time.perf_counter() - started
        code = pipe.close()
        if code != 0:
            raise RuntimeError(f"{command} exited {code}")
        return elapsed * 1000

    def cold_start(self) -> None:
        runs = 2 if self.quick else 30
        py = sys.executable
        variants: dict[str, tuple[list[str], Callable[[Pipe], None]]] = {
            "convmgr serve: initialize + listConversations": (
                [py, "-m", "convmgr", "--no-store"],
                serve_handshake,
            ),
            "convmgr mcp: initialize + tools/list": (
                [py, "-m", "convmgr", "mcp", "--no-store"],
                mcp_handshake,
            ),
            "reference: convmgr mcp with mcp_types imported first": (
                [py, "-c", MCP_TYPES_FIRST, "mcp", "--no-store"],
                mcp_handshake,
            ),
            "reference: the SDK's low-level Server, same tools": (
                [py, "-c", SDK_SERVER],
                mcp_handshake,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(runs + 2):
            for name, (command, handshake) in variants.items():
                elapsed = self.cold(command, handshake)
                if run >= 2:  # two warm-up rounds (page cache, .pyc)
                    times[name].append(elapsed)
        serve = statistics.median(times["convmgr serve: initialize + listConversations"])
        for name, ms in times.items():
            median = statistics.median(ms)
            is_mcp = name.startswith("convmgr mcp")
            self.add(
                Row(
                    f"cold start -> {name}, median",
                    "<= 1.5x serve" if is_mcp else "",
                    median,
                    "ms",
                    median <= 1.5 * serve if is_mcp else None,
                    f"{median / serve:.2f}x serve; p25-p75 {pct(ms, 0.25):.0f}-{pct(ms, 0.75):.0f}"
                    f" ms; {len(ms)} runs",
                    {"runs_ms": [round(x, 2) for x in ms]},
                )
            )

    # --- 2. imports -------------------------------------------------------------------------

    def imports(self) -> None:
        runs = 1 if self.quick else 15
        modules = {
            "mcp_types": "import mcp_types",
            "the SDK's server (lowlevel + stdio)": "import mcp.server.lowlevel, mcp.server.stdio",
            "the SDK's client (session + stdio)": "import mcp.client.session, mcp.client.stdio",
            "convmgr.dialects.mcp (wire, validate, server)": "import convmgr.dialects.mcp.server",
            "convmgr.mcp_app (all `convmgr mcp` imports)": "import convmgr.mcp_app",
        }
        samples: dict[str, list[float]] = {"pass": [], **{name: [] for name in modules}}
        codes = {"pass": "pass", **modules}
        for _ in range(runs):
            for name, code in codes.items():
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=self.env, check=True)
                samples[name].append((time.perf_counter() - started) * 1000)
        bare = statistics.median(samples.pop("pass"))
        for name, ms in samples.items():
            cost = statistics.median(ms) - bare
            self.add(
                Row(
                    f"import {name}",
                    "",
                    cost,
                    "ms",
                    None,
                    f"over python -c pass ({bare:.0f} ms); p25-p75 of the total "
                    f"{pct(ms, 0.25):.0f}-{pct(ms, 0.75):.0f} ms",
                )
            )

    # --- 3. a turn's round trip ----------------------------------------------------------------

    def round_trip(self) -> None:
        anyio.run(self._round_trip, backend_options={"use_uvloop": True})

    async def _round_trip(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        rounds = 60 if self.quick else 1000
        py = sys.executable
        raw_mcp = self.spawn([py, "-m", "convmgr", "mcp", "--no-store"])
        mcp_handshake(raw_mcp)
        raw_mcp.write(line(3, "tools/call", start_args("r")))
        raw_mcp.read_until(b'"id":3')
        serve = self.spawn([py, "-m", "convmgr", "--no-store"])
        serve.write(line(1, "newConversation", {"conversationId": "s"}))
        serve.read_until(b'"id":1')
        params = StdioServerParameters(
            command=py, args=["-m", "convmgr", "mcp", "--no-store"], env=self.env, cwd=self.workdir
        )
        times: dict[str, list[float]] = {"sdk": [], "raw": [], "serve": []}
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            await session.call_tool("conversation_start", start_args("k")["arguments"])
            reply = {"conversationId": "k", "prompt": "hello there"}
            for n in range(rounds + 20):
                msg_id = 10 + n
                started = time.perf_counter()
                result = await session.call_tool("conversation_reply", reply)
                sdk = time.perf_counter() - started
                assert not result.is_error, result
                started = time.perf_counter()
                raw_mcp.write(line(msg_id, "tools/call", reply_args("r")))
                raw_mcp.read_until(b'"id":%d' % msg_id)
                raw = time.perf_counter() - started
                started = time.perf_counter()
                serve.write(line(msg_id, "sendUserTurn", turn_params("s")))
                serve.read_until(b'"turnComplete"')
                served = time.perf_counter() - started
                if n >= 20:  # warm-up
                    times["sdk"].append(sdk * 1e6)
                    times["raw"].append(raw * 1e6)
                    times["serve"].append(served * 1e6)
        raw_mcp.close()
        serve.close()
        base = statistics.median(times["serve"])
        labels = {
            "serve": "sendUserTurn -> turnComplete, convmgr dialect, raw client",
            "raw": "conversation_reply, convmgr mcp, raw client",
            "sdk": "conversation_reply, convmgr mcp, SDK ClientSession",
        }
        for key in ("serve", "raw", "sdk"):
            us = times[key]
            blocks = [statistics.median(us[i::5]) for i in range(5)]
            p50 = statistics.median(us)
            added = "" if key == "serve" else f"; +{p50 - base:.0f} us over the convmgr dialect"
            self.add(
                Row(
                    f"turn on echo, lock-step: {labels[key]}, p50",
                    "",
                    p50,
                    "us",
                    None,
                    f"noise (block p50s) {min(blocks):.0f}-{max(blocks):.0f} us; "
                    f"p90 {pct(us, 0.9):.0f} us{added}",
                )
            )


def start_args(cid: str) -> dict[str, Any]:
    return {"name": "conversation_start", "arguments": {"prompt": "hi", "conversationId": cid}}


def reply_args(cid: str) -> dict[str, Any]:
    return {
        "name": "conversation_reply",
        "arguments": {"conversationId": cid, "prompt": "hello there"},
    }


def turn_params(cid: str) -> dict[str, Any]:
    return {"conversationId": cid, "input": [{"type": "text", "text": "hello there"}]}


PHASES: dict[str, Callable[[Bench], None]] = {
    "cold": Bench.cold_start,
    "imports": Bench.imports,
    "turn": Bench.round_trip,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(PHASES), help="run only these phases")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    precompile()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (cpus {os.cpu_count()})", flush=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix="convmgr-bench-") as workdir:
        bench = Bench(workdir, args.quick)
        for name, phase in PHASES.items():
            if args.only and name not in args.only:
                continue
            print(f"[{name}]", flush=True)
            try:
                phase(bench)
            except Exception as exc:
                failures.append(name)
                print(f"  phase {name} FAILED: {exc!r}", flush=True)
                bench.rows.append(
                    Row(f"{name}: phase failed", "", None, "", False, repr(exc)[:120])
                )
        tail = (
            Path(bench.stderr_path).read_text(errors="replace")[-2000:]
            if os.path.exists(bench.stderr_path)
            else ""
        )
    finish_report(args.json, bench.rows, tail, started, load_before, quick=args.quick)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
