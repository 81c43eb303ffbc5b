#!/usr/bin/env python3
"""Issue 4's numbers end to end: the fake OpenAI server, the real convmgr, real pipes.

    python bench/bench_http_e2e.py [--quick] [--json PATH]

Three processes: the fake OpenAI server (`python tests/fake_openai.py`, scripted
by model name), `python -m convmgr --no-store --config <tmp toml>` (with an empty
XDG_CONFIG_HOME and no CONVMGR_CONFIG), and this client, which drives convmgr
over its stdin/stdout. A reader thread takes stdout in large `os.read` chunks,
stamps each chunk with the time it arrived, and only parses the few lines it
must (responses and a turn's last event); the deltas are checked after the run.

1. One turn of 2,000 deltas, for both kinds and three pacings (back to back,
   1 ms and 5 ms between deltas). convmgr's time runs from writing
   `sendUserTurn` to reading `turnComplete`; the server's is what the fake server
   reports (`GET /_stats`: from the reply's first byte to its last). Overhead =
   (convmgr - server) / server, median of the runs; target <= 10 %. For
   reference, a plain httpx + httpx-sse client reads the back-to-back stream
   directly, and the CPU convmgr spent per delta is recorded.
2. 100 conversations streaming at once (200 deltas each, 10 ms and 20 ms apart):
   every conversation's deltas, its `agentMessage` and `turnComplete` must equal
   what the server sends (one delta per SSE event, text checked against a direct
   read of the same script), and a lock-step `ping` every ~5 ms measures how long
   convmgr's event loop takes to answer; its p99 minus the p99 of the same ping
   loop on an idle convmgr is the loop's added latency (target <= 20 ms).

Prints a table (target, measured, pass/miss) and writes JSON to
bench/results/http_e2e.json. `--quick` shrinks everything for a smoke run. This
is a script, not a test: nothing here asserts on timings. CONVMGR_BENCH_CMD
replaces `python -m convmgr` (e.g. with a profiler), as in bench_core.py.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (  # a sibling script, not a package
    CLK_TCK,
    READ_CHUNK,
    Row,
    encode,
    finish_report,
    fmt,
    pct,
    precompile,
    run_phase,
    server_env,
    spawn_server,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "http_e2e.json"
FAKE_SERVER = ROOT / "tests" / "fake_openai.py"
KINDS = {"openai-chat": "chat", "openai-responses": "resp"}  # kind -> provider name

EVENT_PREFIX = b'{"jsonrpc":"2.0","method":"conversation/event"'
TERMINAL = (b'"type":"turnComplete"', b'"type":"turnFailed"', b'"type":"turnAborted"')


@dataclass
class Sizes:
    deltas: int = 2000
    paces_ms: tuple[float, ...] = (0.0, 1.0, 5.0)
    runs: tuple[int, ...] = (5, 5, 3)  # per pace: 5 ms turns take ~10 s each
    convs: int = 100
    conv_deltas: int = 200
    conv_paces_ms: tuple[float, ...] = (10.0, 20.0)
    ping_interval_s: float = 0.005
    idle_s: float = 3.0


QUICK = Sizes(
    deltas=200,
    paces_ms=(0.0, 1.0),
    runs=(2, 1),
    convs=10,
    conv_deltas=50,
    conv_paces_ms=(10.0,),
    idle_s=0.5,
)


def expected_text(count: int) -> str:
    """What the fake server's `deltas:<count>` script streams."""
    return "".join(f"w{i} " for i in range(count))


def proc_cpu_s(pid: int) -> float:
    """CPU time of a process, all its threads, in s (schedstat: ns; else clock ticks)."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return float("nan")


def model_name(count: int, pace_ms: float) -> str:
    return f"deltas:{count}:{pace_ms:g}" if pace_ms else f"deltas:{count}"


def pace_label(pace_ms: float) -> str:
    return f"{pace_ms:g} ms" if pace_ms else "back to back"


# --- the fake server -------------------------------------------------------------------


class FakeServer:
    """tests/fake_openai.py in its own process."""

    def __init__(self, workdir: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER)],
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(workdir, "fake-stderr.log"), "ab"),  # noqa: SIM115
            text=True,
            cwd=workdir,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            raise RuntimeError(f"the fake server did not start (exit {self.proc.poll()})")
        url = urlsplit(self.base_url)
        self._stats = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)

    def last_stream_s(self) -> float:
        """How long the server took to send its last `deltas` stream."""
        self._stats.request("GET", "/_stats")
        value: float = json.loads(self._stats.getresponse().read())["last_stream_s"]
        return value

    def stream_s_after(self, previous: float) -> float:
        """The next stream's send time (waits for the server to record it)."""
        deadline = time.perf_counter() + 2
        while True:
            value = self.last_stream_s()
            if value != previous or time.perf_counter() > deadline:
                return value
            time.sleep(0.001)

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def close(self) -> None:
        self._stats.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def direct_read(base_url: str, kind: str, model: str) -> tuple[str, int, float]:
    """Read a scripted stream with plain httpx + httpx-sse: the text, deltas, seconds."""
    import httpx
    from httpx_sse import EventSource

    if kind == "openai-chat":
        path = "/chat/completions"
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": "go"}],
            "stream": True,
        }
    else:
        path = "/responses"
        body = {"model": model, "input": [{"role": "user", "content": "go"}], "stream": True}
    pieces: list[str] = []
    with httpx.Client(timeout=30) as client:
        client.get(base_url.replace("/v1", "/_stats"))  # connect first, as convmgr's pool has
        started = time.perf_counter()
        with client.stream("POST", base_url + path, json=body) as response:
            for message in EventSource(response).iter_sse():
                if message.data == "[DONE]":
                    continue
                data = json.loads(message.data)
                if kind == "openai-chat":
                    for choice in data.get("choices") or ():
                        content = choice.get("delta", {}).get("content")
                        if content:
                            pieces.append(content)
                elif data.get("type") == "response.output_text.delta":
                    pieces.append(data["delta"])
        elapsed = time.perf_counter() - started
    return "".join(pieces), len(pieces), elapsed


# --- convmgr ---------------------------------------------------------------------------


class ServerError(RuntimeError):
    pass


class Convmgr:
    """A running `python -m convmgr --no-store --config ...` and a reader thread on its stdout."""

    def __init__(self, config: Path, env: dict[str, str], workdir: str) -> None:
        self._stderr = open(os.path.join(workdir, "convmgr-stderr.log"), "ab")  # noqa: SIM115
        self.proc = spawn_server(["--config", str(config)], env, self._stderr, workdir)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.cond = threading.Condition()
        self.responses: dict[Any, tuple[float, dict[str, Any]]] = {}
        self.events: list[bytes] = []  # every conversation/event line, unparsed
        self.ends: dict[str, tuple[float, dict[str, Any]]] = {}  # conversation -> last event
        self.eof = False
        self.stray = 0  # lines on stdout that are not JSON-RPC
        self.reads = 0  # os.read calls that returned data (about convmgr's writes)
        self.next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Read stdout in big chunks; stamp, sort and (rarely) parse its lines."""
        pending = b""
        while True:
            try:
                data = os.read(self.rfd, READ_CHUNK)
            except OSError:
                data = b""
            now = time.perf_counter()
            if not data:
                with self.cond:
                    self.eof = True
                    self.cond.notify_all()
                return
            self.reads += 1
            pending += data
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            lines = pending[:cut].split(b"\n")
            pending = pending[cut + 1 :]
            events = []
            responses = {}
            ends = {}
            for line in lines:
                if line.startswith(EVENT_PREFIX):
                    events.append(line)
                    if b'"type":"turn' in line and any(mark in line for mark in TERMINAL):
                        message = json.loads(line)
                        ends[message["params"]["conversationId"]] = (now, message)
                elif line.startswith(b"{"):
                    message = json.loads(line)
                    responses[message.get("id")] = (now, message)
                elif line:  # not convmgr's (a profiler's banner, say): skip it
                    self.stray += 1
            with self.cond:
                self.events += events
                self.responses.update(responses)
                self.ends.update(ends)
                self.cond.notify_all()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def wait_response(self, msg_id: int, timeout: float = 30) -> tuple[float, dict[str, Any]]:
        """The time the response arrived and the response."""
        with self.cond:
            if not self.cond.wait_for(
                lambda: msg_id in self.responses or self.eof, timeout=timeout
            ):
                raise ServerError(f"no response to request {msg_id} in {timeout} s")
            if msg_id not in self.responses:
                raise ServerError(f"convmgr closed stdout (exit {self.proc.poll()})")
            return self.responses.pop(msg_id)

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        msg_id = self.new_id()
        self.write(encode(msg_id, method, params or {}))
        _, reply = self.wait_response(msg_id)
        if "error" in reply:
            raise ServerError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_ends(self, conversations: list[str], timeout: float = 60) -> None:
        with self.cond:
            if not self.cond.wait_for(
                lambda: all(c in self.ends for c in conversations) or self.eof, timeout=timeout
            ):
                raise ServerError(f"turns did not end in {timeout} s")
            if self.eof:
                raise ServerError(f"convmgr closed stdout (exit {self.proc.poll()})")

    def take_events(self) -> list[bytes]:
        with self.cond:
            events, self.events = self.events, []
            return events

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def close(self) -> int:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(2)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()
        return rc


def check_turns(events: list[bytes], expected: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Per conversation: deltas, agentMessage and turnComplete against what was sent."""
    deltas: dict[str, list[str]] = {c: [] for c in expected}
    message: dict[str, str | None] = dict.fromkeys(expected)
    last: dict[str, str | None] = dict.fromkeys(expected)
    others: dict[str, int] = {}
    for line in events:
        params = json.loads(line)["params"]
        cid = params["conversationId"]
        if cid not in expected:
            continue
        event = params["event"]
        kind = event["type"]
        if kind == "agentMessageDelta":
            deltas[cid].append(event["delta"])
        elif kind == "agentMessage":
            message[cid] = event["text"]
        elif kind == "turnComplete":
            last[cid] = event.get("lastAgentMessage")
        elif kind not in ("turnStarted", "tokenUsage"):
            others[kind] = others.get(kind, 0) + 1
    bad = []
    for cid, (text, count) in expected.items():
        joined = "".join(deltas[cid])
        if not (len(deltas[cid]) == count and joined == text == message[cid] == last[cid]):
            bad.append(cid)
    sent = sum(count for _, count in expected.values())
    received = sum(len(d) for d in deltas.values())
    return {
        "conversations": len(expected),
        "complete": len(expected) - len(bad),
        "bad": bad[:10],
        "deltas_sent": sent,
        "deltas_received": received,
        "lost": sent - received,
        "unexpected_events": others,
    }


# --- the bench -------------------------------------------------------------------------


class Bench:
    def __init__(self, sizes: Sizes, workdir: str) -> None:
        self.sizes = sizes
        self.workdir = workdir
        config_home = os.path.join(workdir, "xdg")
        os.makedirs(config_home, exist_ok=True)
        self.env = server_env(config_home)
        self.rows: list[Row] = []
        self.fake = FakeServer(workdir)
        self.config = Path(workdir) / "providers.toml"
        tables = "".join(
            f"""
[providers.{name}]
kind = "{kind}"
base_url = "{self.fake.base_url}"
default_model = "deltas:1"
max_retries = 0
request_timeout_s = 30
"""
            for kind, name in KINDS.items()
        )
        self.config.write_text(tables)
        self._conv = 0

    def add(self, row: Row) -> None:
        self.rows.append(row)
        status = "-" if row.passed is None else ("pass" if row.passed else "MISS")
        print(f"  {row.name}: {fmt(row.value, row.unit)} [{status}] {row.note}", flush=True)

    def spawn(self) -> Convmgr:
        server = Convmgr(self.config, self.env, self.workdir)
        server.request("initialize", {"clientInfo": {"name": "bench_http_e2e"}})
        return server

    def new_conversation(self, server: Convmgr, provider: str, model: str) -> str:
        self._conv += 1
        cid = f"c{self._conv}"
        server.request(
            "newConversation", {"conversationId": cid, "provider": provider, "model": model}
        )
        return cid

    def turn_bytes(self, server: Convmgr, cid: str) -> bytes:
        return encode(
            server.new_id(),
            "sendUserTurn",
            {"conversationId": cid, "input": [{"type": "text", "text": "go"}]},
        )

    def warm_up(self, server: Convmgr) -> None:
        """A turn per provider: imports httpx, opens the pooled connections."""
        cids = [self.new_conversation(server, name, "deltas:20") for name in KINDS.values()]
        server.write(b"".join(self.turn_bytes(server, cid) for cid in cids))
        server.wait_ends(cids)
        check = check_turns(server.take_events(), {c: (expected_text(20), 20) for c in cids})
        if check["complete"] != len(cids):
            raise ServerError(f"warm-up turns went wrong: {check}")

    # 1. one long turn

    def single_turn(self) -> None:
        sizes = self.sizes
        n = sizes.deltas
        want = expected_text(n)
        server = self.spawn()
        try:
            self.warm_up(server)
            for kind, provider in KINDS.items():
                text, count, _ = direct_read(self.fake.base_url, kind, model_name(n, 0))
                if (text, count) != (want, n):
                    raise ServerError(f"{kind}: the fake server sent {count} deltas, not {n}")
                for pace, runs in zip(sizes.paces_ms, sizes.runs, strict=True):
                    self._single_case(server, kind, provider, pace, runs)
        finally:
            server.close()

    def _single_case(
        self, server: Convmgr, kind: str, provider: str, pace: float, runs: int
    ) -> None:
        n = self.sizes.deltas
        want = expected_text(n)
        model = model_name(n, pace)
        rows = []
        previous = self.fake.last_stream_s()
        for _ in range(runs):
            cid = self.new_conversation(server, provider, model)
            request = self.turn_bytes(server, cid)
            cpu0, fake_cpu0 = server.cpu_s(), self.fake.cpu_s()
            reads0 = server.reads
            t0 = time.perf_counter()
            server.write(request)
            server.wait_ends([cid])
            t_end = server.ends[cid][0]
            cpu, fake_cpu = server.cpu_s() - cpu0, self.fake.cpu_s() - fake_cpu0
            server_s = self.fake.stream_s_after(previous)
            previous = server_s
            check = check_turns(server.take_events(), {cid: (want, n)})
            if check["complete"] != 1:
                raise ServerError(f"{kind} {model}: {check}")
            client_s = t_end - t0
            rows.append(
                {
                    "convmgr_ms": round(client_s * 1000, 2),
                    "server_ms": round(server_s * 1000, 2),
                    "overhead": round((client_s - server_s) / server_s, 4),
                    "convmgr_cpu_ms": round(cpu * 1000, 1),
                    "fake_server_cpu_ms": round(fake_cpu * 1000, 1),
                    "stdout_reads": server.reads - reads0,
                }
            )
        overhead = statistics.median(r["overhead"] for r in rows)
        convmgr_ms = statistics.median(r["convmgr_ms"] for r in rows)
        server_ms = statistics.median(r["server_ms"] for r in rows)
        cpu_us = statistics.median(r["convmgr_cpu_ms"] for r in rows) * 1000 / n
        fake_us = statistics.median(r["fake_server_cpu_ms"] for r in rows) * 1000 / n
        reads = statistics.median(r["stdout_reads"] for r in rows)
        extra: dict[str, Any] = {"kind": kind, "pace_ms": pace, "deltas": n, "runs": rows}
        note = (
            f"median of {runs}: convmgr {convmgr_ms:.0f} ms vs server {server_ms:.0f} ms; "
            f"cpu us/delta convmgr {cpu_us:.0f}, server {fake_us:.0f}; "
            f"{reads:.0f} stdout reads"
        )
        if not pace:
            direct = [direct_read(self.fake.base_url, kind, model)[2] for _ in range(runs)]
            direct_ms = statistics.median(direct) * 1000
            extra["plain_httpx_ms"] = [round(d * 1000, 2) for d in direct]
            note += f"; plain httpx client {direct_ms:.0f} ms"
        self.add(
            Row(
                f"1 turn x {n:,} deltas, {kind}, {pace_label(pace)}",
                "overhead <= 10 %",
                overhead * 100,
                "%",
                overhead <= 0.10,
                note,
                extra,
            )
        )

    # 2. many conversations at once

    def ping_loop(
        self, server: Convmgr, until: threading.Event, min_duration: float = 0.0
    ) -> list[float]:
        """Lock-step pings every ping_interval_s until `until` is set; round trips in s."""
        interval = self.sizes.ping_interval_s
        rtts = []
        started = time.perf_counter()
        next_at = started
        while not until.is_set() or time.perf_counter() - started < min_duration:
            msg_id = server.new_id()
            t0 = time.perf_counter()
            server.write(encode(msg_id, "ping", {}))
            arrived, _ = server.wait_response(msg_id)
            rtts.append(arrived - t0)
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.perf_counter()
        return rtts

    def concurrent(self) -> None:
        sizes = self.sizes
        n, k = sizes.conv_deltas, sizes.convs
        for pace in sizes.conv_paces_ms:
            for kind, provider in KINDS.items():
                model = model_name(n, pace)
                text, count, _ = direct_read(self.fake.base_url, kind, model)
                if (text, count) != (expected_text(n), n):
                    raise ServerError(f"{kind}: the fake server sent {count} deltas, not {n}")
                server = self.spawn()
                try:
                    self.warm_up(server)
                    # The baseline: the same ping loop with nothing streaming.
                    never = threading.Event()
                    never.set()
                    idle = self.ping_loop(server, never, sizes.idle_s)
                    cids = [self.new_conversation(server, provider, model) for _ in range(k)]
                    blob = b"".join(self.turn_bytes(server, cid) for cid in cids)
                    done = threading.Event()

                    def wait_all(
                        server: Convmgr = server,
                        cids: list[str] = cids,
                        done: threading.Event = done,
                    ) -> None:
                        try:
                            server.wait_ends(cids, timeout=120)
                        finally:
                            done.set()

                    waiter = threading.Thread(target=wait_all, daemon=True)
                    cpu0, fake_cpu0 = server.cpu_s(), self.fake.cpu_s()
                    t0 = time.perf_counter()
                    server.write(blob)
                    waiter.start()
                    busy = self.ping_loop(server, done)
                    elapsed = time.perf_counter() - t0
                    waiter.join()
                    cpu, fake_cpu = server.cpu_s() - cpu0, self.fake.cpu_s() - fake_cpu0
                    want = {cid: (text, count) for cid in cids}
                    check = check_turns(server.take_events(), want)
                finally:
                    server.close()
                self._concurrent_rows(kind, pace, idle, busy, check, elapsed, cpu, fake_cpu)

    def _concurrent_rows(
        self,
        kind: str,
        pace: float,
        idle: list[float],
        busy: list[float],
        check: dict[str, Any],
        elapsed: float,
        cpu: float,
        fake_cpu: float,
    ) -> None:
        sizes = self.sizes
        k, n = sizes.convs, sizes.conv_deltas
        label = f"{k} convs x {n} deltas, {kind}, {pace:g} ms"
        ok = check["complete"] == k and check["lost"] == 0 and not check["unexpected_events"]
        self.add(
            Row(
                f"{label}: deltas lost",
                "0, all texts equal",
                check["lost"],
                "deltas",
                ok,
                f"{check['complete']}/{k} conversations whole; "
                f"{check['deltas_received']:,}/{check['deltas_sent']:,} deltas",
                check,
            )
        )
        idle_ms = [x * 1000 for x in idle]
        busy_ms = [x * 1000 for x in busy]
        added = pct(busy_ms, 0.99) - pct(idle_ms, 0.99)
        self.add(
            Row(
                f"{label}: added loop latency p99",
                "<= 20 ms",
                added,
                "ms",
                added <= 20,
                f"ping p50/p99/max {pct(busy_ms, 0.5):.2f}/{pct(busy_ms, 0.99):.2f}/"
                f"{max(busy_ms):.1f} ms ({len(busy_ms)} pings) vs idle "
                f"{pct(idle_ms, 0.5):.2f}/{pct(idle_ms, 0.99):.2f} ms; {elapsed:.1f} s, "
                f"cpu convmgr {cpu / elapsed:.0%} server {fake_cpu / elapsed:.0%}",
                {
                    "kind": kind,
                    "pace_ms": pace,
                    "pings": len(busy_ms),
                    "busy_ms": {
                        "p50": round(pct(busy_ms, 0.5), 3),
                        "p99": round(pct(busy_ms, 0.99), 3),
                        "max": round(max(busy_ms), 3),
                    },
                    "idle_ms": {
                        "p50": round(pct(idle_ms, 0.5), 3),
                        "p99": round(pct(idle_ms, 0.99), 3),
                        "max": round(max(idle_ms), 3),
                    },
                    "elapsed_s": round(elapsed, 3),
                    "convmgr_cpu_s": round(cpu, 3),
                    "fake_server_cpu_s": round(fake_cpu, 3),
                },
            )
        )


PHASES = {"single": Bench.single_turn, "concurrent": Bench.concurrent}


def code_version() -> dict[str, Any]:
    """The commit measured, and the files of convmgr changed from it (a shared checkout moves)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "convmgr")
    return {
        "commit": git("rev-parse", "HEAD"),
        "convmgr_changed": [line[3:] for line in changed.splitlines()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    started = time.perf_counter()
    failures: list[str] = []
    precompile()
    version = code_version()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (cpus {os.cpu_count()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="convmgr-http-e2e-") as workdir:
        bench = Bench(sizes, workdir)
        try:
            for name, phase in PHASES.items():
                run_phase(name, lambda phase=phase: phase(bench), bench.rows, failures)
        finally:
            bench.fake.close()
        stderr_tail = ""
        log = Path(workdir) / "convmgr-stderr.log"
        if log.exists():
            stderr_tail = log.read_text(errors="replace")[-2000:]
    finish_report(
        args.json,
        bench.rows,
        stderr_tail,
        started,
        load_before,
        quick=args.quick,
        sizes=asdict(sizes),
        code=version,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
