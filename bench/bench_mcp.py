#!/usr/bin/env python3
"""One MCP tool call through McpHub.call vs the same call made with the SDK's ClientSession.

    python bench/bench_mcp.py [--calls N] [--quick] [--json PATH]

Two mcp-server-time processes (the test extra's server, run by this interpreter),
one behind convmgr's McpHub, one behind a bare `stdio_client` + `ClientSession`,
both in this process's event loop (uvloop, as convmgr serves). Each round calls
`get_current_time {"timezone": "UTC"}` once on each, in alternating order, after
a warm-up; p50 and p90 of each, and the hub's overhead (p50 hub - p50 direct;
target <= 1 ms). The hub's call also turns the result into text (the model's
outcome), which the direct call does not: that is part of what it costs.

Before that, the hub's first tools() call starts its server and imports the SDK
(in a thread); a ticker that sleeps 1 ms records how late the event loop wakes
meanwhile (what every other conversation would feel).

Then the same call made through a whole convmgr server (`python -m convmgr
--no-store` with the time server configured, `approval = "auto"`), driven by
echo's `/call` lines, alternating with the direct SDK call: the time from the
`toolCall` event to the `toolResult` event as the client reads them (both are
written by the server right around the call), against the direct call's time.

Prints a table and writes JSON to bench/results/mcp.json. A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import Row, finish_report, pct  # a sibling script, not a package

from convmgr.model import McpServerSettings
from convmgr.tools.mcp import McpHub, McpTool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "mcp.json"
SERVER = McpServerSettings("time", sys.executable, ("-m", "mcp_server_time"))
ARGUMENTS = {"timezone": "UTC"}
WARM_UP = 20


async def loop_lag_during(work: Any) -> tuple[Any, float]:
    """Run `work()`; the longest the event loop was late waking a 1 ms sleeper meanwhile (ms)."""
    worst = 0.0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        result = await work()
        done.set()
    return result, worst * 1000


async def measure(calls: int, rows: list[Row]) -> None:
    """The start-up lag, then `calls` rounds of one call each way."""
    async with McpHub({"time": SERVER}) as hub:
        started = time.perf_counter()
        (tools, failures), lag_ms = await loop_lag_during(lambda: hub.tools(["time"]))
        start_s = time.perf_counter() - started
        if failures:
            raise RuntimeError(f"mcp-server-time did not start: {failures}")
        rows.append(Row("first tools(): SDK import + server start", "", start_s * 1000, "ms", None))
        rows.append(Row("  event loop late meanwhile (max)", "", lag_ms, "ms", None, "1 ms ticker"))
        tool = next(t for t in tools if t.tool == "get_current_time")
        await direct_vs_hub(hub, tool, calls, rows)
        exit_started = time.perf_counter()
    exit_ms = (time.perf_counter() - exit_started) * 1000
    rows.append(
        Row("leaving the hub (its server stopped)", "<= 1,000 ms", exit_ms, "ms", exit_ms <= 1000)
    )
    await direct_vs_server(calls, rows)


class ServerProcess:
    """`python -m convmgr --no-store` with the time server configured, read line by line."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.buffer = b""
        self.ids = 0

    async def send(self, method: str, params: dict[str, Any]) -> None:
        import json

        self.ids += 1
        line = json.dumps({"id": self.ids, "method": method, "params": params}) + "\n"
        await self.process.stdin.send(line.encode())

    async def event(self, kind: str) -> float:
        """Read until an event of that type; the time it was read."""
        import json

        while True:
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            event = message.get("params", {}).get("event", {}) if "method" in message else {}
            if event.get("type") == kind:
                return time.perf_counter()
            if event.get("type") == "toolResult" and event.get("isError"):
                raise RuntimeError(f"the call failed: {event}")


async def direct_vs_server(calls: int, rows: list[Row]) -> None:
    """Alternate one call through a convmgr server and one straight through the SDK."""
    import tempfile

    from mcp import ClientSession, StdioServerParameters, stdio_client

    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "config.toml"
        config.write_text(
            "[mcp_servers.time]\n"
            f"command = {json_text(sys.executable)}\n"
            'args = ["-m", "mcp_server_time"]\napproval = "auto"\n',
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "convmgr", "--no-store", "--config", str(config)]
        params = StdioServerParameters(command=SERVER.command, args=list(SERVER.args))
        with open(os.devnull, "w") as quiet:
            async with (
                await anyio.open_process(command, stderr=quiet) as process,
                stdio_client(params, errlog=quiet) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                server = ServerProcess(process)
                await server.send("newConversation", {"conversationId": "bench"})
                text = '/call time__get_current_time {"timezone": "UTC"}'
                turn = {"conversationId": "bench", "input": [{"type": "text", "text": text}]}

                async def through_server() -> float:
                    await server.send("sendUserTurn", turn)
                    called = await server.event("toolCall")
                    answered = await server.event("toolResult")
                    await server.event("turnComplete")
                    return (answered - called) * 1000

                async def direct() -> float:
                    before = time.perf_counter()
                    result = await session.call_tool("get_current_time", ARGUMENTS)
                    if result.is_error:
                        raise RuntimeError("the direct call failed")
                    return (time.perf_counter() - before) * 1000

                for _ in range(WARM_UP):
                    await through_server()
                    await direct()
                times: dict[str, list[float]] = {"direct": [], "server": []}
                for index in range(calls):
                    order = [("direct", direct), ("server", through_server)]
                    for name, call in order if index % 2 else reversed(order):
                        times[name].append(await call())
                await process.stdin.aclose()
                await process.wait()
    direct_ms, server_ms = times["direct"], times["server"]
    for label, values in (("SDK directly (same run)", direct_ms), ("through convmgr", server_ms)):
        rows.append(Row(f"{label}: p50", "", pct(values, 0.5), "ms", None, f"{calls} calls"))
        rows.append(Row(f"{label}: p90", "", pct(values, 0.9), "ms", None))
    overhead = pct(server_ms, 0.5) - pct(direct_ms, 0.5)
    rows.append(
        Row(
            "convmgr overhead (toolCall..toolResult), p50",
            "<= 1 ms",
            overhead,
            "ms",
            overhead <= 1.0,
        )
    )


def json_text(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    import json

    return json.dumps(value)


async def direct_vs_hub(hub: McpHub, tool: McpTool, calls: int, rows: list[Row]) -> None:
    """Alternate one call through the hub and one straight through the SDK, `calls` times."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=SERVER.command, args=list(SERVER.args))
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await session.list_tools()

            async def direct() -> bool:
                result = await session.call_tool(tool.tool, ARGUMENTS)
                return not result.is_error

            async def through_hub() -> bool:
                outcome = await hub.call(tool, ARGUMENTS)
                return not outcome.is_error

            for _ in range(WARM_UP):
                await direct()
                await through_hub()
            times: dict[str, list[float]] = {"direct": [], "hub": []}
            for index in range(calls):
                order = [("direct", direct), ("hub", through_hub)]
                for name, call in order if index % 2 else reversed(order):
                    before = time.perf_counter()
                    ok = await call()
                    times[name].append((time.perf_counter() - before) * 1000)
                    if not ok:
                        raise RuntimeError(f"the {name} call failed")
    direct_ms, hub_ms = times["direct"], times["hub"]
    for label, values in (("SDK ClientSession directly", direct_ms), ("McpHub.call", hub_ms)):
        rows.append(Row(f"{label}: p50", "", pct(values, 0.5), "ms", None, f"{calls} calls"))
        rows.append(Row(f"{label}: p90", "", pct(values, 0.9), "ms", None))
    overhead = pct(hub_ms, 0.5) - pct(direct_ms, 0.5)
    rows.append(Row("McpHub overhead, p50", "<= 1 ms", overhead, "ms", overhead <= 1.0))
    rows.append(Row("McpHub overhead, p90", "", pct(hub_ms, 0.9) - pct(direct_ms, 0.9), "ms", None))


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="rounds (one call each way)")
    parser.add_argument("--quick", action="store_true", help="30 rounds, for a smoke run")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    calls = 30 if args.quick else args.calls
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (cpus {os.cpu_count()})", flush=True)
    rows: list[Row] = []
    try:
        import uvloop  # noqa: F401  (convmgr serves on it where it is installed)

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    anyio.run(measure, calls, rows, backend_options=options)
    finish_report(args.json, rows, "", started, load_before, calls=calls, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
