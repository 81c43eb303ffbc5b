#!/usr/bin/env python3
"""Core numbers of convmgr, measured against the real server over real pipes.

    python bench/bench_core.py [--quick] [--only NAME ...] [--json PATH]

Each phase spawns a fresh `python -m convmgr --no-store` with an empty
configuration directory (so only the `echo` provider exists) and drives it
through its stdin/stdout. The client is built not to be the bottleneck: it
writes pre-encoded requests, reads stdout in large `os.read` chunks and counts
lines and markers with `bytes.count` instead of parsing JSON. Client and
server CPU time are recorded per phase so that can be checked.

Prints a table (target, measured, pass/miss) and writes it as JSON to
bench/results/core.json. `--quick` shrinks every count for a smoke run.
This is a script, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "core.json"
READ_CHUNK = 1 << 20
WRITE_CHUNK = 1 << 16
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- sizes ---------------------------------------------------------------------------


@dataclass
class Sizes:
    cold_runs: int = 30
    get_pipelined: int = 100_000
    get_lockstep: int = 5_000
    new_pipelined: int = 20_000
    stream_words: int = 200_000
    stream_convs: int = 10
    stream_words_each: int = 50_000
    idle_convs: int = 10_000
    interrupt_words: int = 1_000_000
    interrupt_runs: int = 5
    sigterm_runs: int = 5


QUICK = Sizes(
    cold_runs=5,
    get_pipelined=10_000,
    get_lockstep=1_000,
    new_pipelined=2_000,
    stream_words=20_000,
    stream_convs=4,
    stream_words_each=5_000,
    idle_convs=1_000,
    interrupt_words=200_000,
    interrupt_runs=2,
    sigterm_runs=2,
)


# --- results ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    target: str
    value: float | None
    unit: str
    passed: bool | None  # None: informational, no target
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def print_table(rows: list[Row]) -> None:
    headers = ("measurement", "target", "measured", "result", "notes")
    lines = [
        (
            r.name,
            r.target or "-",
            fmt(r.value, r.unit),
            "-" if r.passed is None else ("pass" if r.passed else "MISS"),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    sep = "  "
    print()
    print(sep.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print(sep.join("-" * w for w in widths))
    for line in lines:
        print(sep.join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- the server process ------------------------------------------------------------------


def server_env(config_home: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CONVMGR_CONFIG", "CONVMGR_HOME"):
        env.pop(name, None)
    env["XDG_CONFIG_HOME"] = config_home
    env["XDG_DATA_HOME"] = config_home
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # An installed package has its bytecode compiled; without .pyc files every
    # spawn would compile convmgr from source (precompile() writes them).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile() -> None:
    """Write convmgr's .pyc files, as `pip install` would (cold starts then load them)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("convmgr")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            compileall.compile_dir(location, quiet=1)


def server_cmd(extra: Iterable[str] = ()) -> list[str]:
    override = os.environ.get("CONVMGR_BENCH_CMD")  # e.g. a profiling wrapper
    base = override.split() if override else [sys.executable, "-m", "convmgr"]
    return [*base, "--no-store", *extra]


def spawn_server(
    extra: Iterable[str], env: dict[str, str], stderr: IO[bytes], cwd: str | None
) -> subprocess.Popen[bytes]:
    """Start the server with piped stdin/stdout, unbuffered."""
    return subprocess.Popen(
        server_cmd(extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=cwd,  # not the checkout: `-m convmgr` must not find ./convmgr first
        bufsize=0,
    )


class ServerError(RuntimeError):
    pass


class Server:
    """A spawned server with a buffered line reader on its stdout."""

    def __init__(self, env: dict[str, str], stderr_path: str, cwd: str | None = None) -> None:
        self._stderr = open(stderr_path, "ab")  # noqa: SIM115
        self.proc = spawn_server((), env, self._stderr, cwd)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = b""  # bytes read but not yet consumed
        self.next_id = 1_000_000_000

    # - plumbing -

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.wfd, view[:WRITE_CHUNK])
            view = view[written:]

    def _fill(self) -> None:
        data = os.read(self.rfd, READ_CHUNK)
        if not data:
            raise ServerError(f"server closed stdout (exit {self.proc.poll()})")
        self.buf += data

    def read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1 :]
                return line
            self._fill()

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result, skipping notifications before it."""
        self.next_id += 1
        msg_id = self.next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.write(json.dumps(msg).encode() + b"\n")
        while True:
            reply = json.loads(self.read_line())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise ServerError(f"{method}: {reply['error']}")
                return reply["result"]

    def count_lines(self, n: int) -> None:
        """Consume exactly n lines, counting newlines only (no parsing)."""
        seen = self.buf.count(b"\n")
        while seen < n:
            data = os.read(self.rfd, READ_CHUNK)
            if not data:
                raise ServerError(f"server closed stdout (exit {self.proc.poll()})")
            self.buf += data
            seen += data.count(b"\n")
        # keep what follows the n-th line
        cut = -1
        for _ in range(n):
            cut = self.buf.find(b"\n", cut + 1)
        self.buf = self.buf[cut + 1 :]

    def scan(
        self, markers: dict[str, bytes], done: Callable[[dict[str, int]], bool]
    ) -> tuple[dict[str, int], dict[str, float]]:
        """Read complete lines, counting marker occurrences, until done(counts).

        Returns the counts and, per marker, the time its count first became
        non-zero (at read-chunk granularity). Bytes after the chunk that
        satisfied `done` stay in the buffer. Markers must not straddle lines.
        """
        counts = dict.fromkeys(markers, 0)
        first: dict[str, float] = {}
        pending = self.buf
        self.buf = b""
        while True:
            end = pending.rfind(b"\n") + 1
            if end:
                now = time.perf_counter()
                region = pending[:end] if end < len(pending) else pending
                pending = pending[end:]
                for name, marker in markers.items():
                    c = region.count(marker)
                    if c:
                        counts[name] += c
                        if name not in first:
                            first[name] = now
                if done(counts):
                    self.buf = pending
                    return counts, first
            data = os.read(self.rfd, READ_CHUNK)
            if not data:
                raise ServerError(f"server closed stdout (exit {self.proc.poll()})")
            pending += data

    def drain_in_thread(self) -> threading.Thread:
        """Keep reading (and discarding) stdout in a thread until EOF."""

        def run() -> None:
            try:
                while os.read(self.rfd, READ_CHUNK):
                    pass
            except OSError:
                pass

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    # - process facts -

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ServerError("no VmRSS")

    def cpu_s(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            return float("nan")

    def close(self, timeout: float = 10.0) -> int | None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        t = self.drain_in_thread()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        t.join(1)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()
        return rc


class Meter:
    """Wall time and the CPU time of client and server over a phase."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall0 = time.perf_counter()
        self.client0 = time.process_time()
        self.server0 = server.cpu_s()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        client = time.process_time() - self.client0
        server = self.server.cpu_s() - self.server0
        return {
            "wall_s": round(wall, 4),
            "client_cpu_pct": round(100 * client / wall, 1),
            "server_cpu_pct": round(100 * server / wall, 1),
        }


def cpu_note(cpu: dict[str, float]) -> str:
    return f"cpu client {cpu['client_cpu_pct']:.0f}% server {cpu['server_cpu_pct']:.0f}%"


# --- request bytes -----------------------------------------------------------------------


def encode(msg_id: int, method: str, params: dict[str, Any]) -> bytes:
    return (
        json.dumps(
            {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params},
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


def words(n: int) -> str:
    # Short, distinct-ish words; none contains a marker the client counts.
    return " ".join(f"w{i % 997}" for i in range(n))


def turn_request(msg_id: int, cid: str, text: str) -> bytes:
    return encode(
        msg_id, "sendUserTurn", {"conversationId": cid, "input": [{"type": "text", "text": text}]}
    )


DELTA = b'"agentMessageDelta"'
COMPLETE = b'"turnComplete"'
ABORTED = b'"turnAborted"'
RESULT = b'"result"'
ERROR = b'"error"'
STARTED = b'"turnStarted"'


# --- phases -------------------------------------------------------------------------------


class Bench:
    def __init__(self, sizes: Sizes, workdir: str) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.config_home = os.path.join(workdir, "config")
        os.makedirs(self.config_home, exist_ok=True)
        self.env = server_env(self.config_home)
        self.stderr_path = os.path.join(workdir, "server-stderr.log")
        self.rows: list[Row] = []

    def spawn(self, initialize: bool = True) -> Server:
        server = Server(self.env, self.stderr_path, self.workdir)
        if initialize:
            server.request("initialize", {"clientInfo": {"name": "bench"}})
        return server

    def add(self, row: Row) -> None:
        self.rows.append(row)
        status = "-" if row.passed is None else ("pass" if row.passed else "MISS")
        print(f"  {row.name}: {fmt(row.value, row.unit)} [{status}] {row.note}", flush=True)

    # 1. cold start

    def cold_start(self) -> None:
        n = self.sizes.cold_runs
        init = encode(1, "initialize", {"clientInfo": {"name": "bench"}})
        # Interpreter alone, for reference.
        bare = []
        for _ in range(max(3, n // 3)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=self.env, check=True)
            bare.append(time.perf_counter() - t0)
        times = []
        for i in range(n + 2):
            t0 = time.perf_counter()
            server = Server(self.env, self.stderr_path, self.workdir)
            server.write(init)
            line = server.read_line()
            t1 = time.perf_counter()
            if b'"protocolVersion"' not in line:
                raise ServerError(f"bad initialize response: {line[:200]!r}")
            rc = server.close()
            if rc != 0:
                raise ServerError(f"server exited {rc} after initialize")
            if i >= 2:  # two warm-up runs (page cache, .pyc)
                times.append(t1 - t0)
        ms = [t * 1000 for t in times]
        med = statistics.median(ms)
        self.add(
            Row(
                "cold start -> initialize, median",
                "<= 120 ms",
                med,
                "ms",
                med <= 120,
                f"{n} runs; python -c pass alone {statistics.median(bare) * 1000:.0f} ms",
                {
                    "runs_ms": [round(x, 2) for x in ms],
                    "python_bare_ms": round(statistics.median(bare) * 1000, 2),
                },
            )
        )
        self.add(
            Row(
                "cold start -> initialize, p90",
                "",
                pct(ms, 0.9),
                "ms",
                None,
                f"min {min(ms):.0f} max {max(ms):.0f} ms",
            )
        )

    # 2. getConversation

    def get_conversation(self) -> None:
        server = self.spawn()
        try:
            server.request("newConversation", {"conversationId": "bench"})
            n = self.sizes.get_pipelined
            reqs = [
                encode(i, "getConversation", {"conversationId": "bench"}) for i in range(1, n + 1)
            ]
            # warm-up
            server.write(b"".join(reqs[:1000]))
            server.count_lines(1000)
            blob = b"".join(reqs)

            def writer() -> None:
                server.write(blob)

            meter = Meter(server)
            t0 = time.perf_counter()
            w = threading.Thread(target=writer)
            w.start()
            counts, _ = server.scan(
                {"result": RESULT, "error": ERROR}, lambda c: c["result"] + c["error"] >= n
            )
            dt = time.perf_counter() - t0
            w.join()
            cpu = meter.stop()
            if counts["error"]:
                raise ServerError(f"{counts['error']} getConversation errors")
            rate = n / dt
            self.add(
                Row(
                    "getConversation pipelined",
                    ">= 50,000 req/s",
                    rate,
                    "req/s",
                    rate >= 50_000,
                    f"{n:,} requests; {cpu_note(cpu)}",
                    cpu,
                )
            )

            # lock-step
            m = self.sizes.get_lockstep
            lat = []
            meter = Meter(server)
            for i in range(m):
                req = reqs[i % len(reqs)]
                t0 = time.perf_counter()
                os.write(server.wfd, req)
                data = os.read(server.rfd, READ_CHUNK)
                while not data.endswith(b"\n"):
                    data += os.read(server.rfd, READ_CHUNK)
                lat.append(time.perf_counter() - t0)
            cpu = meter.stop()
            us = [x * 1e6 for x in lat]
            p50 = pct(us, 0.5)
            self.add(
                Row(
                    "getConversation lock-step p50",
                    "<= 150 us",
                    p50,
                    "us",
                    p50 <= 150,
                    f"{m:,} requests; {cpu_note(cpu)}",
                    cpu,
                )
            )
            self.add(
                Row(
                    "getConversation lock-step p99",
                    "",
                    pct(us, 0.99),
                    "us",
                    None,
                    f"mean {statistics.fmean(us):.0f} us",
                )
            )
        finally:
            server.close()

    # 3. newConversation

    def new_conversation(self) -> None:
        server = self.spawn()
        try:
            n = self.sizes.new_pipelined
            warm = b"".join(
                encode(i, "newConversation", {"conversationId": f"warm-{i}"}) for i in range(200)
            )
            server.write(warm)
            server.count_lines(200)
            blob = b"".join(
                encode(i, "newConversation", {"conversationId": f"conv-{i}"})
                for i in range(1, n + 1)
            )
            meter = Meter(server)
            t0 = time.perf_counter()
            w = threading.Thread(target=server.write, args=(blob,))
            w.start()
            counts, _ = server.scan(
                {"result": RESULT, "error": ERROR}, lambda c: c["result"] + c["error"] >= n
            )
            dt = time.perf_counter() - t0
            w.join()
            cpu = meter.stop()
            if counts["error"]:
                raise ServerError(f"{counts['error']} newConversation errors")
            rate = n / dt
            self.add(
                Row(
                    "newConversation pipelined",
                    ">= 5,000 /s",
                    rate,
                    "conv/s",
                    rate >= 5_000,
                    f"{n:,} with client ids; {cpu_note(cpu)}",
                    cpu,
                )
            )
        finally:
            server.close()

    # 4. streaming

    def streaming(self) -> None:
        server = self.spawn()
        try:
            # warm-up turn
            server.request("newConversation", {"conversationId": "warm"})
            server.write(turn_request(1, "warm", words(2000)))
            server.scan({"c": COMPLETE}, lambda c: c["c"] >= 1)

            nw = self.sizes.stream_words
            server.request("newConversation", {"conversationId": "s"})
            req = turn_request(2, "s", words(nw))
            meter = Meter(server)
            server.write(req)
            counts, first = server.scan(
                {"result": RESULT, "delta": DELTA, "complete": COMPLETE, "error": ERROR},
                lambda c: c["complete"] >= 1 or c["error"] > 0,
            )
            t_end = time.perf_counter()
            cpu = meter.stop()
            if counts["error"] or counts["delta"] != nw:
                raise ServerError(f"stream: {counts}")
            rate = counts["delta"] / (t_end - first["result"])
            self.add(
                Row(
                    "echo stream, 1 conversation",
                    ">= 50,000 deltas/s",
                    rate,
                    "deltas/s",
                    rate >= 50_000,
                    f"{nw:,} words; {cpu_note(cpu)}",
                    cpu,
                )
            )

            k = self.sizes.stream_convs
            each = self.sizes.stream_words_each
            for j in range(k):
                server.request("newConversation", {"conversationId": f"m{j}"})
            text = words(each)
            blob = b"".join(turn_request(100 + j, f"m{j}", text) for j in range(k))
            meter = Meter(server)
            server.write(blob)
            counts, first = server.scan(
                {"result": RESULT, "delta": DELTA, "complete": COMPLETE, "error": ERROR},
                lambda c: c["complete"] >= k or c["error"] > 0,
            )
            t_end = time.perf_counter()
            cpu = meter.stop()
            if counts["error"] or counts["delta"] != k * each:
                raise ServerError(f"stream x{k}: {counts}")
            rate = counts["delta"] / (t_end - first["result"])
            self.add(
                Row(
                    f"echo stream, {k} conversations",
                    ">= 50,000 deltas/s",
                    rate,
                    "deltas/s",
                    rate >= 50_000,
                    f"{k} x {each:,} words, aggregate; {cpu_note(cpu)}",
                    cpu,
                )
            )
        finally:
            server.close()

    # 5. memory

    def memory(self) -> None:
        server = self.spawn()
        try:
            # One conversation first, so the one-time cost of the first is not counted.
            server.request("newConversation", {"conversationId": "first"})
            server.request("getConversation", {"conversationId": "first"})
            before = server.rss_kib()
            n = self.sizes.idle_convs
            blob = b"".join(
                encode(i, "newConversation", {"conversationId": f"idle-{i}"})
                for i in range(1, n + 1)
            )
            w = threading.Thread(target=server.write, args=(blob,))
            w.start()
            counts, _ = server.scan(
                {"result": RESULT, "error": ERROR}, lambda c: c["result"] + c["error"] >= n
            )
            w.join()
            if counts["error"]:
                raise ServerError(f"{counts['error']} newConversation errors")
            server.request("ping")
            after = server.rss_kib()
            per = (after - before) / n
            self.add(
                Row(
                    f"RSS per idle conversation ({n:,})",
                    "<= 8 KiB",
                    per,
                    "KiB",
                    per <= 8,
                    f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB",
                    {"rss_before_kib": before, "rss_after_kib": after},
                )
            )
        finally:
            server.close()

    # 6. interrupt and SIGTERM

    def interrupt(self) -> None:
        nw = self.sizes.interrupt_words
        text = words(nw)
        server = self.spawn()
        lat = []
        resp = []
        try:
            for r in range(self.sizes.interrupt_runs):
                cid = f"i{r}"
                server.request("newConversation", {"conversationId": cid})
                server.write(turn_request(10 + r, cid, text))
                counts, _ = server.scan({"delta": DELTA}, lambda c: c["delta"] >= 1000)
                t0 = time.perf_counter()
                server.write(encode(900 + r, "interruptConversation", {"conversationId": cid}))
                counts, first = server.scan(
                    {
                        "aborted": ABORTED,
                        "interrupted": b'"interrupted":true',
                        "complete": COMPLETE,
                    },
                    lambda c: c["aborted"] >= 1 or c["complete"] >= 1,
                )
                if counts["complete"]:
                    raise ServerError("the turn completed before the interrupt landed")
                lat.append((first["aborted"] - t0) * 1000)
                if "interrupted" in first:
                    resp.append((first["interrupted"] - t0) * 1000)
        finally:
            server.close()
        med = statistics.median(lat)
        self.add(
            Row(
                "interrupt -> turnAborted, median",
                "prompt (< 100 ms)",
                med,
                "ms",
                med < 100,
                f"{nw:,}-word turn, {len(lat)} runs, max {max(lat):.1f} ms"
                + (f"; response median {statistics.median(resp):.1f} ms" if resp else ""),
                {"runs_ms": [round(x, 2) for x in lat]},
            )
        )

        exits = []
        for _ in range(self.sizes.sigterm_runs):
            server = self.spawn()
            server.request("newConversation", {"conversationId": "t"})
            server.write(turn_request(5, "t", text))
            server.scan({"delta": DELTA}, lambda c: c["delta"] >= 1000)
            drain = server.drain_in_thread()
            t0 = time.perf_counter()
            server.proc.send_signal(signal.SIGTERM)
            try:
                rc = server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                rc = server.proc.wait()
            exits.append((time.perf_counter() - t0) * 1000)
            drain.join(1)
            server.close()
            if rc != 0:
                print(f"  warning: exit status {rc} after SIGTERM", flush=True)
        med = statistics.median(exits)
        self.add(
            Row(
                "SIGTERM mid-turn -> exit, max",
                "< 1000 ms",
                max(exits),
                "ms",
                max(exits) < 1000,
                f"{len(exits)} runs, median {med:.0f} ms",
                {"runs_ms": [round(x, 2) for x in exits]},
            )
        )


PHASES = {
    "cold": Bench.cold_start,
    "get": Bench.get_conversation,
    "new": Bench.new_conversation,
    "stream": Bench.streaming,
    "memory": Bench.memory,
    "interrupt": Bench.interrupt,
}


def run_phase(name: str, phase: Callable[[], None], rows: list[Row], failures: list[str]) -> None:
    """Run one phase; a broken phase is reported as a row and the rest still runs."""
    print(f"[{name}]", flush=True)
    try:
        phase()
    except Exception as exc:
        failures.append(name)
        print(f"  phase {name} FAILED: {exc!r}", flush=True)
        rows.append(Row(f"{name}: phase failed", "", None, "", False, repr(exc)[:120]))


def finish_report(
    path: Path,
    rows: list[Row],
    stderr_tail: str,
    started: float,
    load_before: tuple[float, float, float],
    **fields: Any,
) -> None:
    """Print the table, write the JSON results (with `fields`) and the server's stderr tail."""
    print_table(rows)
    report = {
        **fields,
        "python": sys.version.split()[0],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "elapsed_s": round(time.perf_counter() - started, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "rows": [asdict(r) for r in rows],
        "server_stderr_tail": stderr_tail,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path} ({report['elapsed_s']} s)")
    if stderr_tail.strip():
        print("server stderr (tail):\n" + stderr_tail, file=sys.stderr)


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
    with tempfile.TemporaryDirectory(prefix="convmgr-bench-") as workdir:
        bench = Bench(sizes, workdir)
        for name, phase in PHASES.items():
            if args.only and name not in args.only:
                continue
            run_phase(name, lambda phase=phase: phase(bench), bench.rows, failures)
        stderr_tail = (
            Path(bench.stderr_path).read_text(errors="replace")[-2000:]
            if os.path.exists(bench.stderr_path)
            else ""
        )
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
