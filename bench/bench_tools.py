#!/usr/bin/env python3
"""Client tools over real pipes: the round trip convmgr adds, and tool calls per second.

    python bench/bench_tools.py [--quick] [--only NAME ...] [--json PATH]

Spawns `python -m convmgr` (an empty configuration directory, so only `echo`)
and plays the client that runs the tools. Echo asks for a call for each
`/call NAME {json}` line of the turn's input, and for each such line in a
tool's output (docs/protocol.md), so the client keeps a turn going for as many
rounds as it likes by answering `/call lookup {"step": N+1}`.

1. latency (`--no-store`): one conversation, lock-step. The client times each
   call from reading the `tool/call` request to reading the call's `toolResult`
   event, answering at once with pre-built bytes; that is the round trip convmgr
   adds (its reading and checking the answer, resolving the call, emitting the
   event; plus one pipe hop each way). p50/p90/p99 over >= 2,000 calls, target
   p50 <= 200 us. For scale: a lock-step `ping` over the same pipes, and the
   server's CPU per tool round (the whole round: echo's model call, `toolCall`,
   `tool/call`, the answer, `toolResult`; /proc/PID/stat over the loop).
2. throughput: 100 conversations at once, each running turns of 10 tool
   rounds (`{"step": 1}` .. `{"step": 10}`, then the answer `done 10` ends
   the turn), the next turn sent when its turnComplete is read; `--no-store`
   (target >= 5,000 calls/s) and with the store, alternating runs.
3. interrupt (`--no-store`): the client holds a `tool/call` and interrupts the
   turn; from writing `interruptConversation` to reading the `$/cancelRequest`
   for the held call and the `turnAborted` (target: within 100 ms), 300 times.

The client is one thread that reads stdout in large `os.read` chunks, matches
lines by prefix or marker (no JSON parsing), and answers with pre-built bytes,
every answer of a chunk in one write; its own CPU is reported per phase, so a
client-bound run shows. Prints a table (target, measured, pass/miss) and writes
JSON to bench/results/tools.json. `--quick` shrinks every count for a smoke run.
CONVMGR_BENCH_CMD replaces `python -m convmgr`, as in bench_core.py. This is a
script, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (  # a sibling script, not a package
    READ_CHUNK,
    Row,
    ServerError,
    encode,
    finish_report,
    fmt,
    pct,
    precompile,
    run_phase,
    server_env,
    turn_request,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tools.json"

LOOKUP = {"name": "lookup", "description": "Looks up a step.", "inputSchema": {"type": "object"}}

# What the client recognises on stdout (convmgr writes compact JSON, keys in this order).
REQUEST_PREFIX = b'{"jsonrpc":"2.0","id":"s'  # a server request: tool/call here
TOOL_CALL_METHOD = b'"method":"tool/call"'
RESPONSE_PREFIX = b'{"jsonrpc":"2.0","id":'
EVENT_PREFIX = b'{"jsonrpc":"2.0","method":"conversation/event","params":{"conversationId":"'
STEP = b'"arguments":{"step":'
TOOL_RESULT = b'"type":"toolResult"'
COMPLETE = b'"type":"turnComplete"'
UNEXPECTED_END = (b'"type":"turnFailed"', b'"type":"turnAborted"')
ABORTED = b'"type":"turnAborted"'
CANCEL_REQUEST = b'"method":"$/cancelRequest"'
ERROR = b'"error":'

# The client's answers, pre-built: a tool/call id and a text (already JSON-escaped).
ANSWER = b'{"jsonrpc":"2.0","id":"s%s","result":{"content":[{"type":"text","text":"%s"}]}}\n'
NEXT_CALL = b'/call lookup {\\"step\\": %d}'  # the text `/call lookup {"step": N}`


@dataclass
class Sizes:
    latency_calls: int = 2_000
    calls_per_turn: int = 25  # lock-step turns of the latency phase (max_tool_rounds is 32)
    pings: int = 2_000
    conversations: int = 100
    turns: int = 10  # per conversation and run
    rounds: int = 10  # tool calls per turn
    runs: int = 3  # throughput runs of each kind, alternating
    interrupts: int = 300


QUICK = Sizes(
    latency_calls=200,
    calls_per_turn=10,
    pings=200,
    conversations=20,
    turns=2,
    rounds=10,
    runs=1,
    interrupts=20,
)


def tool_call(line: bytes) -> tuple[bytes, int]:
    """The request's id number (after "s") and its `step` argument."""
    start = len(REQUEST_PREFIX)
    number = line[start : line.index(b'"', start)]
    at = line.rindex(STEP) + len(STEP)
    return number, int(line[at : line.index(b"}", at)])


def refuse_failure(line: bytes) -> None:
    """Raise on an error response or a turn that ended otherwise than complete."""
    if (line.startswith(RESPONSE_PREFIX) and ERROR in line) or any(
        marker in line for marker in UNEXPECTED_END
    ):
        raise ServerError(f"a request or turn failed: {line[:300]!r}")


def answer_for(number: bytes, step: int, last_step: int) -> bytes:
    """The next step's call, or `done N` once the turn has had its rounds."""
    if step < last_step:
        return ANSWER % (number, NEXT_CALL % (step + 1))
    return ANSWER % (number, b"done %d" % step)


def server_cmd(flags: list[str]) -> list[str]:
    override = os.environ.get("CONVMGR_BENCH_CMD")  # e.g. a profiling wrapper
    base = override.split() if override else [sys.executable, "-m", "convmgr"]
    return [*base, *flags]


class ToolServer:
    """A spawned server, driven from this one thread: writes, chunked reads, lines."""

    def __init__(self, flags: list[str], env: dict[str, str], stderr: IO[bytes], cwd: str) -> None:
        self.proc = subprocess.Popen(
            server_cmd(flags),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,  # not the checkout: `-m convmgr` must not find ./convmgr first
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.partial = b""  # the start of a line not yet complete
        self.next_id = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def lines(self) -> list[bytes]:
        """The complete lines of the next chunk read (blocks for at least one byte)."""
        data = os.read(self.rfd, READ_CHUNK)
        if not data:
            raise ServerError(f"server closed stdout (exit {self.proc.poll()})")
        parts = (self.partial + data).split(b"\n")
        self.partial = parts.pop()
        return parts

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request; its result (lines read meanwhile are dropped)."""
        self.next_id += 1
        msg_id = self.next_id
        self.write(encode(msg_id, method, params or {}))
        marker = b'"id":%d,' % msg_id
        while True:
            for line in self.lines():
                if line.startswith(RESPONSE_PREFIX) and marker in line[:40]:
                    reply = json.loads(line)
                    if "error" in reply:
                        raise ServerError(f"{method}: {reply['error']}")
                    return reply["result"]

    def new_conversations(self, ids: list[str]) -> None:
        """newConversation with the tool for each id, pipelined."""
        first = self.next_id + 1
        self.write(
            b"".join(
                encode(first + n, "newConversation", {"conversationId": cid, "tools": [LOOKUP]})
                for n, cid in enumerate(ids)
            )
        )
        self.next_id += len(ids)
        answered = 0
        while answered < len(ids):
            for line in self.lines():
                if line.startswith(RESPONSE_PREFIX):
                    if ERROR in line:
                        raise ServerError(f"newConversation failed: {line[:300]!r}")
                    answered += 1

    def sched_s(self) -> tuple[float, float]:
        """(CPU seconds, seconds runnable but waiting for a CPU) of all the server's threads.

        From Linux schedstat, in nanoseconds (/proc/PID/stat counts 10 ms ticks).
        A high wait means other processes compete for the cores: the run is noisy.
        """
        cpu = wait = 0
        base = f"/proc/{self.proc.pid}/task"
        try:
            for task in os.listdir(base):
                with open(f"{base}/{task}/schedstat") as f:
                    fields = f.read().split()
                cpu += int(fields[0])
                wait += int(fields[1])
        except (OSError, ValueError, IndexError):
            return float("nan"), float("nan")
        return cpu / 1e9, wait / 1e9

    def close(self, timeout: float = 30.0) -> int:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]

        def drain() -> None:
            with contextlib.suppress(OSError):
                while os.read(self.rfd, READ_CHUNK):
                    pass

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        reader.join(1)
        self.proc.stdout.close()  # type: ignore[union-attr]
        return rc


class Bench:
    def __init__(self, sizes: Sizes, workdir: str) -> None:
        self.sizes = sizes
        self.workdir = workdir
        config_home = os.path.join(workdir, "config")
        os.makedirs(config_home, exist_ok=True)
        self.env = server_env(config_home)
        self.stderr_path = os.path.join(workdir, "server-stderr.log")
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in close()
        self.rows: list[Row] = []
        self.runs = 0

    def close(self) -> None:
        self._stderr.close()

    def spawn(self, flags: list[str]) -> ToolServer:
        server = ToolServer(flags, self.env, self._stderr, self.workdir)
        server.request("initialize", {"clientInfo": {"name": "bench_tools"}})
        return server

    def finish(self, server: ToolServer) -> None:
        rc = server.close()
        if rc != 0:
            raise ServerError(f"server exited with status {rc}")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        status = "-" if row.passed is None else ("pass" if row.passed else "MISS")
        print(f"  {row.name}: {fmt(row.value, row.unit)} [{status}] {row.note}", flush=True)

    # 1. the round trip

    def _lockstep_turn(self, server: ToolServer, msg_id: int, rtt: list[float] | None) -> int:
        """One turn of calls_per_turn calls, answered at once; the calls it made."""
        last = self.sizes.calls_per_turn
        server.write(turn_request(msg_id, "lat", '/call lookup {"step": 1}'))
        asked_at = 0.0
        calls = 0
        while True:
            lines = server.lines()
            now = time.perf_counter()
            for line in lines:
                if line.startswith(REQUEST_PREFIX):
                    number, step = tool_call(line)
                    server.write(answer_for(number, step, last))
                    asked_at = now
                    calls += 1
                elif TOOL_RESULT in line:
                    if rtt is not None:
                        rtt.append(now - asked_at)
                elif COMPLETE in line:
                    if b'"lastAgentMessage":"done %d"' % last not in line:
                        raise ServerError(f"unexpected end of turn: {line[:300]!r}")
                    return calls
                else:
                    refuse_failure(line)

    def latency(self) -> None:
        s = self.sizes
        server = self.spawn(["--no-store"])
        try:
            server.new_conversations(["lat"])
            self._lockstep_turn(server, 100, None)  # warm-up: imports, first-use paths
            rtt: list[float] = []
            cpu0, _ = server.sched_s()
            client0 = time.process_time()
            wall0 = time.perf_counter()
            calls = 0
            msg_id = 1000
            while calls < s.latency_calls:
                msg_id += 1
                calls += self._lockstep_turn(server, msg_id, rtt)
            wall = time.perf_counter() - wall0
            server_cpu_us = (server.sched_s()[0] - cpu0) / calls * 1e6
            client_cpu_us = (time.process_time() - client0) / calls * 1e6
            # The same pipes with the simplest request: a lock-step ping.
            ping = encode(7, "ping", {})
            pings: list[float] = []
            for _ in range(s.pings):
                t0 = time.perf_counter()
                server.write(ping)
                while not any(line.startswith(RESPONSE_PREFIX) for line in server.lines()):
                    pass
                pings.append(time.perf_counter() - t0)
            self.finish(server)
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
        if len(rtt) != calls:
            raise ServerError(f"{calls} calls but {len(rtt)} toolResult events")
        us = [x * 1e6 for x in rtt]
        p50, p90, p99 = pct(us, 0.5), pct(us, 0.9), pct(us, 0.99)
        ping_us = [x * 1e6 for x in pings]
        extra = {
            "calls": calls,
            "p50_us": round(p50, 1),
            "p90_us": round(p90, 1),
            "p99_us": round(p99, 1),
            "max_us": round(max(us), 1),
            "ping_p50_us": round(pct(ping_us, 0.5), 1),
            "ping_p99_us": round(pct(ping_us, 0.99), 1),
            "server_cpu_us_per_round": round(server_cpu_us, 1),
            "client_cpu_us_per_round": round(client_cpu_us, 1),
            "rounds_per_s": round(calls / wall),
        }
        note = f"{calls:,} lock-step calls, --no-store"
        self.add(Row("tool round trip, p50", "<= 200 us", p50, "us", p50 <= 200, note, extra))
        self.add(Row("tool round trip, p90", "", p90, "us", None, ""))
        self.add(Row("tool round trip, p99", "", p99, "us", None, f"max {max(us):,.0f} us"))
        self.add(
            Row(
                "ping lock-step, p50 (same pipes)",
                "",
                pct(ping_us, 0.5),
                "us",
                None,
                f"p99 {pct(ping_us, 0.99):.0f} us, {len(pings):,} pings",
            )
        )
        self.add(
            Row(
                "server CPU per tool round",
                "",
                server_cpu_us,
                "us",
                None,
                f"whole round, lock-step; client CPU {client_cpu_us:.0f} us/round",
            )
        )

    # 2. throughput

    def _throughput_run(self, flags: list[str]) -> dict[str, float]:
        s = self.sizes
        server = self.spawn(flags)
        try:
            ids = [f"c{n}" for n in range(s.conversations)]
            server.new_conversations(ids)
            first_turn = '/call lookup {"step": 1}'
            next_id = 1000
            left = dict.fromkeys(ids, s.turns - 1)
            done_marker = b'"lastAgentMessage":"done %d"' % s.rounds
            total_turns = s.conversations * s.turns
            calls = completed = 0
            cpu0, wait0 = server.sched_s()
            client0 = time.process_time()
            wall0 = time.perf_counter()
            out = []
            for cid in ids:
                next_id += 1
                out.append(turn_request(next_id, cid, first_turn))
            server.write(b"".join(out))
            while completed < total_turns:
                out = []
                for line in server.lines():
                    if line.startswith(REQUEST_PREFIX):
                        number, step = tool_call(line)
                        out.append(answer_for(number, step, s.rounds))
                        calls += 1
                    elif COMPLETE in line:
                        if done_marker not in line:
                            raise ServerError(f"unexpected end of turn: {line[:300]!r}")
                        completed += 1
                        start = len(EVENT_PREFIX)
                        cid = line[start : line.index(b'"', start)].decode()
                        if left[cid]:
                            left[cid] -= 1
                            next_id += 1
                            out.append(turn_request(next_id, cid, first_turn))
                    else:
                        refuse_failure(line)
                if out:
                    server.write(b"".join(out))
            wall = time.perf_counter() - wall0
            client_cpu = time.process_time() - client0
            cpu1, wait1 = server.sched_s()
            server_cpu, run_wait = cpu1 - cpu0, wait1 - wait0
            self.finish(server)
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
        expected = total_turns * s.rounds
        if calls != expected:
            raise ServerError(f"{calls} tool/call requests, expected {expected}")
        return {
            "calls_per_s": calls / wall,
            "wall_s": wall,
            "client_cpu_pct": 100 * client_cpu / wall,
            "server_cpu_pct": 100 * server_cpu / wall,
            "server_cpu_us_per_call": server_cpu / calls * 1e6,
            "server_cpu_wait_pct": 100 * run_wait / wall,
        }

    def throughput(self) -> None:
        s = self.sizes
        results: dict[str, list[dict[str, float]]] = {"no-store": [], "store": []}
        for run in range(s.runs):
            for kind in ("no-store", "store"):
                store = os.path.join(self.workdir, f"tools-{run}.sqlite3")
                flags = ["--no-store"] if kind == "no-store" else ["--store", store]
                result = self._throughput_run(flags)
                results[kind].append(result)
                print(
                    f"  run {run + 1} {kind}: {result['calls_per_s']:,.0f} calls/s "
                    f"(client CPU {result['client_cpu_pct']:.0f}%, "
                    f"server CPU {result['server_cpu_pct']:.0f}%, "
                    f"waiting for a CPU {result['server_cpu_wait_pct']:.0f}%)",
                    flush=True,
                )
        calls = s.conversations * s.turns * s.rounds
        medians = {}
        for kind, runs in results.items():
            rates = [r["calls_per_s"] for r in runs]
            med = statistics.median(rates)
            medians[kind] = med
            client = statistics.median(r["client_cpu_pct"] for r in runs)
            server_pct = statistics.median(r["server_cpu_pct"] for r in runs)
            per_call = statistics.median(r["server_cpu_us_per_call"] for r in runs)
            waiting = statistics.median(r["server_cpu_wait_pct"] for r in runs)
            target = ">= 5,000 calls/s" if kind == "no-store" else ""
            passed = med >= 5000 if kind == "no-store" else None
            self.add(
                Row(
                    f"tool calls/s, {s.conversations} conversations, {kind}",
                    target,
                    med,
                    "calls/s",
                    passed,
                    f"median of {len(rates)} (min {min(rates):,.0f}, max {max(rates):,.0f}); "
                    f"{calls:,} calls a run; cpu client {client:.0f}% server {server_pct:.0f}% "
                    f"({per_call:.0f} us/call), server waiting for a CPU {waiting:.0f}%",
                    {"runs": [{k: round(v, 2) for k, v in r.items()} for r in runs]},
                )
            )
        self.add(
            Row(
                "tool calls/s, store / no-store",
                "",
                medians["store"] / medians["no-store"],
                "x",
                None,
                f"{s.turns} turns of {s.rounds} rounds per conversation, each turn one commit",
            )
        )

    def interrupt(self) -> None:
        """Interrupt while the client holds a tool/call: how soon the turn ends (target 100 ms)."""
        server = self.spawn(["--no-store"])
        try:
            server.new_conversations(["int"])
            to_cancel: list[float] = []
            to_end: list[float] = []
            msg_id = 10_000
            for _ in range(self.sizes.interrupts):
                msg_id += 2
                server.write(turn_request(msg_id, "int", '/call lookup {"step": 1}'))
                sent = 0.0
                cancelled = ended = False
                while not ended:
                    lines = server.lines()
                    now = time.perf_counter()
                    for line in lines:
                        if line.startswith(REQUEST_PREFIX) and not sent:
                            # Hold the call; interrupt the turn instead.
                            server.write(
                                encode(
                                    msg_id + 1, "interruptConversation", {"conversationId": "int"}
                                )
                            )
                            sent = time.perf_counter()
                        elif CANCEL_REQUEST in line and sent and not cancelled:
                            to_cancel.append(now - sent)
                            cancelled = True
                        elif ABORTED in line:
                            to_end.append(now - sent)
                            ended = True
                if not cancelled:
                    raise ServerError("no $/cancelRequest for the held tool/call")
        finally:
            self.finish(server)
        for label, values in (("$/cancelRequest", to_cancel), ("turnAborted", to_end)):
            ms = sorted(v * 1000 for v in values)
            worst = ms[-1]
            self.add(
                Row(
                    f"interrupt during a tool call -> {label}, max",
                    "<= 100 ms" if label == "turnAborted" else "",
                    worst,
                    "ms",
                    worst <= 100 if label == "turnAborted" else None,
                    f"p50 {statistics.median(ms):.2f} ms over {len(ms)} interrupts",
                )
            )


PHASES = {
    "latency": Bench.latency,
    "throughput": Bench.throughput,
    "interrupt": Bench.interrupt,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(PHASES), help="run only these phases")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    started = time.perf_counter()
    failures: list[str] = []
    precompile()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (cpus {os.cpu_count()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="convmgr-bench-tools-") as workdir:
        bench = Bench(sizes, workdir)
        try:
            for name, phase in PHASES.items():
                if args.only and name not in args.only:
                    continue
                run_phase(name, lambda phase=phase: phase(bench), bench.rows, failures)
        finally:
            bench.close()
        stderr_tail = Path(bench.stderr_path).read_text(errors="replace")[-2000:]
    finish_report(
        args.json,
        bench.rows,
        stderr_tail,
        started,
        load_before,
        quick=args.quick,
        sizes=asdict(sizes),
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
