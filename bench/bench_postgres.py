#!/usr/bin/env python3
"""The PostgreSQL store vs the SQLite store, side by side through the real server.

    python bench/bench_postgres.py [--quick] [--rounds N] [--json PATH]

Starts a throwaway PostgreSQL server of its own (initdb + pg_ctl in a temp dir,
tests/pg_server.py) and drives `python -m convmgr --store URL` and
`--store FILE` over pipes, each measurement repeated over `--rounds` rounds (a
fresh server process each) so the run-to-run noise shows as min-max:

1. echo turns/s: 100 conversations, lock-step turns each, all at once
   (as bench_store_server.py); every turn commits before its turnComplete;
2. a 50-row `listConversations` page out of 100,000 stored conversations, p50;
3. `resumeConversation` of a 100,000-item conversation (time, extra RSS of the
   server) and a 100-item `getConversation` history page of it, p50;
4. a slow database: a TCP proxy in this process delays every packet between
   the server and PostgreSQL by 50 ms; while one conversation's turns commit
   through it, `ping` and `getConversation` of another loaded conversation
   must not stall: their p99, with and without the delay.

Targets (issue 14): list page <= 20 ms; resume <= 300 ms and <= 50 MiB extra
RSS. Prints the table and writes JSON (bench/results/postgres.json). A script,
not a test: nothing asserts on timings. `--quick` shrinks every count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_core import Row, finish_report, pct, precompile, run_phase  # noqa: E402
from bench_store import BIG, SETTINGS, item_json, populate  # noqa: E402
from bench_store_server import Server, one_run  # noqa: E402
from pg_server import PgServer, pg_server  # noqa: E402

RESULTS = HERE / "results" / "postgres.json"
PAGE = 100  # items in the getConversation history page


@dataclass
class Sizes:
    rounds: int = 3
    conversations: int = 100
    turns: int = 20
    words: int = 5
    stored: int = 100_000
    items: int = 100_000
    list_requests: int = 50
    page_requests: int = 20
    slow_window_s: float = 5.0
    delay_ms: float = 50.0


QUICK = Sizes(
    rounds=2,
    conversations=10,
    turns=5,
    stored=2_000,
    items=2_000,
    list_requests=10,
    page_requests=5,
    slow_window_s=1.0,
)


# --- the client ----------------------------------------------------------------------


class Client(Server):
    """bench_store_server's Server, plus lock-step requests with their latency."""

    def __init__(self, args: list[str], home: Path) -> None:
        super().__init__(args, home)
        self.on_event: Callable[[dict[str, Any]], None] = lambda params: None

    def request(self, method: str, params: dict[str, Any] | None = None) -> tuple[Any, float]:
        """Send one request, hand notifications to on_event; its result and ms."""
        start = time.perf_counter()
        msg_id = self.send(method, params or {})
        while True:
            msg = self.read()
            if msg.get("id") == msg_id:
                elapsed = (time.perf_counter() - start) * 1000
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"], elapsed
            if "error" in msg:
                raise RuntimeError(f"request failed: {msg}")
            if "params" in msg and "id" not in msg:
                self.on_event(msg["params"])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        try:
            self.finish()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def client(store: str, home: Path) -> Iterator[Client]:
    c = Client(["--store", store], home)
    try:
        yield c
    finally:
        c.close()


# --- a TCP proxy that delays every packet -----------------------------------------------


class DelayProxy:
    """127.0.0.1:port -> the database, each chunk delivered `delay_s` after it was read.

    Runs its own event loop in a thread; `delay_s` can be changed while it runs.
    Order is kept per direction (a queue per direction, delivered in order).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay_s = 0.0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def pump() -> None:
            while True:
                data = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + self.delay_s, data))
                if not data:
                    return

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        with contextlib.suppress(OSError):
            await asyncio.gather(pump(), deliver())

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(creader, swriter), self._pipe(sreader, cwriter), return_exceptions=True
        )

    def close(self) -> None:
        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self._thread.join(5)


# --- seeding -----------------------------------------------------------------------------


def open_close(store: Any) -> None:
    """Open and close a store: its schema is created."""

    async def run() -> None:
        await store.open()
        await store.close()

    asyncio.run(run())


def seed_sqlite(path: Path, sizes: Sizes) -> None:
    from convmgr.store.sqlite import SqliteStore

    open_close(SqliteStore(path))
    populate(path, sizes.stored, sizes.items)
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.close()


def seed_postgres(url: str, sizes: Sizes) -> None:
    """The same rows as bench_store.populate, with COPY."""
    import psycopg

    from convmgr.model import utc_now
    from convmgr.store.postgres import PostgresStore

    open_close(PostgresStore(url))
    base = time.time() - sizes.stored
    now = utc_now()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = "conversation_id, settings, created_at, updated_at, history_length, last_seq"
        with cur.copy(f"COPY conversations ({columns}, preview) FROM STDIN") as copy:
            for n in range(sizes.stored):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + n))
                stamp += f".{n % 10**6:06}Z"
                copy.write_row((f"conv-{n:06}", SETTINGS, stamp, stamp, 2, 4, f"question {n}"))
            copy.write_row((BIG, SETTINGS, now, now, sizes.items, sizes.items * 3, "message 0"))
        with cur.copy("COPY items (conversation_id, idx, json, is_user) FROM STDIN") as copy:
            for n in range(sizes.items):
                copy.write_row((BIG, n, item_json(n), n % 2 == 0))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# --- the benchmark -------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"min-max {min(values):,.2f}-{max(values):,.2f} over {len(values)} rounds"


class Bench:
    def __init__(self, sizes: Sizes, pg: PgServer, work: Path) -> None:
        self.sizes = sizes
        self.pg = pg
        self.work = work
        self.rows: list[Row] = []
        self.seeded: dict[str, str] = {}

    def add(
        self,
        name: str,
        target: str,
        values: list[float],
        unit: str,
        limit: float | None = None,
        note: str = "",
        **extra: Any,
    ) -> float:
        med = statistics.median(values)
        passed = None if limit is None else med <= limit
        text = spread(values) + (f"; {note}" if note else "")
        self.rows.append(Row(name, target, med, unit, passed, text, {"runs": values, **extra}))
        print(f"  {name}: {med:,.2f} {unit} ({text})", flush=True)
        return med

    def stores(self) -> dict[str, str]:
        """The seeded SQLite file and PostgreSQL database (made once)."""
        if not self.seeded:
            start = time.perf_counter()
            path = self.work / "seeded.sqlite3"
            seed_sqlite(path, self.sizes)
            url = self.pg.new_database()
            seed_postgres(url, self.sizes)
            self.seeded = {"sqlite": str(path), "postgres": url}
            print(f"  seeded both stores in {time.perf_counter() - start:.1f} s", flush=True)
        return self.seeded

    # 1. turn commits

    def turns(self) -> None:
        s = self.sizes
        rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
        cpu: dict[str, list[float]] = {"sqlite": [], "postgres": []}
        for round_no in range(s.rounds):
            targets = {
                "sqlite": str(self.work / f"turns-{round_no}.sqlite3"),
                "postgres": self.pg.new_database(),
            }
            for name, store in targets.items():
                rate, cpu_us = one_run(
                    ["--store", store], self.work, s.conversations, s.turns, s.words
                )
                rates[name].append(rate)
                cpu[name].append(cpu_us)
        for name in rates:
            self.add(
                f"echo turns/s, {s.conversations} conversations, {name}",
                "",
                rates[name],
                "turns/s",
                note=f"server CPU {statistics.median(cpu[name]):.0f} us/turn",
                cpu_us_per_turn=cpu[name],
            )
        ratio = statistics.median(rates["postgres"]) / statistics.median(rates["sqlite"])
        self.rows.append(Row("echo turns/s, postgres / sqlite", "", ratio, "x", None))

    # 2 + 3. list, resume, history page

    def reads(self) -> None:
        s = self.sizes
        stores = self.stores()
        found: dict[str, dict[str, list[float]]] = {
            name: {"list": [], "resume": [], "rss": [], "page": []} for name in stores
        }
        for _ in range(s.rounds):
            for name, store in stores.items():
                got = found[name]
                with client(store, self.work) as c:
                    c.request("ping")
                    lat = []
                    for _ in range(s.list_requests):
                        result, ms = c.request("listConversations", {"limit": 50})
                        assert len(result["items"]) == 50, result.keys()
                        lat.append(ms)
                    got["list"].append(pct(lat, 0.5))
                    before = c.rss_kib()
                    result, ms = c.request("resumeConversation", {"conversationId": BIG})
                    assert result["sessionConfigured"]["historyLength"] == s.items, result
                    got["resume"].append(ms)
                    got["rss"].append((c.rss_kib() - before) / 1024)
                    lat = []
                    page = {
                        "conversationId": BIG,
                        "includeHistory": True,
                        "historyOffset": s.items - PAGE,
                        "historyLimit": PAGE,
                    }
                    for _ in range(s.page_requests):
                        result, ms = c.request("getConversation", page)
                        assert len(result["history"]) == PAGE
                        lat.append(ms)
                    got["page"].append(pct(lat, 0.5))
        n, k = f"{s.stored:,}", f"{s.items:,}"
        for name, got in found.items():
            self.add(f"listConversations 50 of {n}, p50, {name}", "<= 20 ms", got["list"], "ms", 20)
        for name, got in found.items():
            self.add(
                f"resumeConversation, {k} items, {name}", "<= 300 ms", got["resume"], "ms", 300
            )
        for name, got in found.items():
            self.add(f"resume: extra server RSS, {name}", "<= 50 MiB", got["rss"], "MiB", 50)
        for name, got in found.items():
            self.add(
                f"getConversation page of {PAGE} at the end, p50, {name}", "", got["page"], "ms"
            )

    # 4. a slow database

    def slow(self) -> None:
        s = self.sizes
        port = int(self.pg.url().rsplit(":", 1)[1].split("/")[0])
        proxy = DelayProxy(port)
        results: dict[str, dict[str, list[float]]] = {
            cond: {"ping": [], "get": [], "turns": [], "samples": []}
            for cond in ("no delay", "delay")
        }
        try:
            for _ in range(s.rounds):
                url = self.pg.new_database().replace(f":{port}/", f":{proxy.port}/")
                proxy.delay_s = 0.0
                with client(url, self.work) as c:
                    c.request("newConversation", {"conversationId": "busy"})
                    c.request("newConversation", {"conversationId": "other"})
                    for cond, delay in (("no delay", 0.0), ("delay", s.delay_ms / 1000)):
                        proxy.delay_s = delay
                        got = results[cond]
                        ping, get, turns, samples = self._alongside_turns(c)
                        got["ping"].append(ping)
                        got["get"].append(get)
                        got["turns"].append(turns)
                        got["samples"].append(samples)
                    proxy.delay_s = 0.0
        finally:
            proxy.close()
        d = f"{s.delay_ms:.0f} ms"
        for what, label in (("ping", "ping"), ("get", "getConversation of another")):
            for cond, got in results.items():
                tag = f"db packets +{d}" if cond == "delay" else "no delay"
                self.add(
                    f"slow db: {label} p99, {tag}",
                    f"< {d}" if cond == "delay" else "",
                    got[what],
                    "ms",
                    s.delay_ms if cond == "delay" else None,
                    note=f"{min(got['samples'])}+ samples; meanwhile the busy conversation "
                    f"ran {statistics.median(got['turns']):.1f} turns/s",
                )

    def _alongside_turns(self, c: Client) -> tuple[float, float, float, int]:
        """p99 of ping and getConversation("other") while "busy" runs turns back to back.

        Sampled over a fixed window, long enough for many of the busy
        conversation's commits; also its turns/s and the number of samples.
        """
        turn = {"conversationId": "busy", "input": [{"type": "text", "text": "hello there"}]}
        done = 0
        running: bool | None = True

        def on_event(params: dict[str, Any]) -> None:
            nonlocal done, running
            if params["conversationId"] == "busy" and params["event"]["type"] == "turnComplete":
                done += 1
                if running:
                    c.send("sendUserTurn", turn)
                else:
                    running = None  # the last turn is over

        c.on_event = on_event
        c.send("sendUserTurn", turn)
        start = time.perf_counter()
        pings, gets = [], []
        while time.perf_counter() - start < self.sizes.slow_window_s:
            pings.append(c.request("ping")[1])
            gets.append(c.request("getConversation", {"conversationId": "other"})[1])
            time.sleep(0.002)
        rate = done / (time.perf_counter() - start)
        # let the busy conversation's last turn finish before the next condition
        running = False
        while running is not None:
            c.request("ping")
            time.sleep(0.01)
        c.on_event = lambda params: None
        return pct(pings, 0.99), pct(gets, 0.99), rate, len(pings)


PHASES = {"turns": Bench.turns, "reads": Bench.reads, "slow": Bench.slow}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 3)")
    parser.add_argument("--only", nargs="+", choices=list(PHASES), help="run only these phases")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = args.rounds
    started = time.perf_counter()
    failures: list[str] = []
    precompile()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} (cpus {os.cpu_count()})", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="convmgr-bench-pg-") as workdir,
        pg_server() as pg,
    ):
        bench = Bench(sizes, pg, Path(workdir))
        for name, phase in PHASES.items():
            if args.only and name not in args.only:
                continue
            run_phase(name, lambda phase=phase: phase(bench), bench.rows, failures)
        log = pg.root / "server.log"
        pg_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    finish_report(
        args.json,
        bench.rows,
        "",
        started,
        load_before,
        quick=args.quick,
        sizes=asdict(sizes),
        postgres_log_tail=pg_log,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
