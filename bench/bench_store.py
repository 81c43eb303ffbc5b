"""Benchmarks of SqliteStore on its own (not a test): listing, resume, turn commits.

Usage: python bench/bench_store.py [--dir DIR] [--conversations N] [--items N]

Also: forkConversation of the 100,000-item conversation, copied inside the
store (fork_history), in a fresh child process: time and extra RSS.

Targets (issue 3): a listConversations page of 50 out of 100,000 stored in
<= 20 ms; resume of a 100,000-item conversation in <= 300 ms and <= 50 MiB of
extra RSS. The resume is measured in a fresh child process so that the
benchmark's own setup does not count against its memory.
"""

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from convmgr.model import ConversationRecord, ConversationSettings, message_item, utc_now
from convmgr.store.sqlite import SqliteStore

BIG = "big-conversation"
TAIL = 200  # items a resume-like access reads from the end
SETTINGS = json.dumps({"provider": "echo", "model": "echo"})


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def item_json(n: int) -> str:
    """A history item of typical chat size (~300 bytes)."""
    role = "user" if n % 2 == 0 else "assistant"
    text = f"message {n}: " + "lorem ipsum dolor sit amet " * 10
    return json.dumps(message_item(role, text), separators=(",", ":"))


def populate(path: Path, conversations: int, items: int) -> None:
    """Bulk-load the store through a plain connection (setup, not measured)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    base = time.time() - conversations
    rows = []
    for n in range(conversations):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + n)) + f".{n % 10**6:06}Z"
        rows.append((f"conv-{n:06}", SETTINGS, stamp, stamp, 2, 4, f"question {n}"))
    conn.executemany(
        "INSERT INTO conversations (conversation_id, settings, created_at, updated_at, "
        "history_length, last_seq, preview) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    now = utc_now()
    conn.execute(
        "INSERT INTO conversations (conversation_id, settings, created_at, updated_at, "
        "history_length, last_seq, preview) VALUES (?, ?, ?, ?, ?, ?, 'message 0')",
        (BIG, SETTINGS, now, now, items, items * 3),
    )
    conn.executemany(
        "INSERT INTO items (conversation_id, idx, json, is_user) VALUES (?, ?, ?, ?)",
        ((BIG, n, item_json(n), int(n % 2 == 0)) for n in range(items)),
    )
    conn.execute("COMMIT")
    conn.close()


def timed(samples: list[float]) -> str:
    """Median and worst of a list of milliseconds."""
    return f"median {statistics.median(samples):7.2f} ms  max {max(samples):7.2f} ms"


async def measure(func: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    """Run func `runs` times; the wall time of each in ms."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await func()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def bench_list(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """listConversations pages: the first, and one deep in the keyset."""
    store = SqliteStore(path)
    await store.open()
    try:
        first = await measure(lambda: store.list(None, 50), 50)
        cursor: str | None = None
        for _ in range(1000):  # walk 50,000 conversations deep
            _, cursor = await store.list(cursor, 50)
        deep_cursor = cursor
        deep = await measure(lambda: store.list(deep_cursor, 50), 50)
    finally:
        await store.close()
    rows.append(("list: first page of 50", timed(first), "<= 20 ms"))
    rows.append(("list: page of 50 at 50,000 deep", timed(deep), "<= 20 ms"))


async def resume_child(path: Path) -> None:
    """In a fresh process: open the store, get the record, read the tail; print JSON."""
    before = rss_kib()
    start = time.perf_counter()
    store = SqliteStore(path)
    await store.open()
    opened = time.perf_counter()
    record = await store.get(BIG)
    assert record is not None
    await store.acquire(BIG)
    tail = await store.read_items(BIG, max(0, record.history_length - TAIL), TAIL)
    resumed = time.perf_counter()
    assert len(tail) == min(TAIL, record.history_length)
    after_resume = rss_kib()
    everything = await store.read_items(BIG)
    full = time.perf_counter()
    after_full = rss_kib()
    assert len(everything) == record.history_length
    await store.close()
    print(
        json.dumps(
            {
                "open_ms": (opened - start) * 1000,
                "resume_ms": (resumed - start) * 1000,
                "resume_rss_kib": after_resume - before,
                "full_ms": (full - resumed) * 1000,
                "full_rss_kib": after_full - before,
            }
        )
    )


async def fork_child(path: Path, new_id: str, drop: int) -> None:
    """In a fresh process: fork the big conversation inside the store; print JSON."""
    store = SqliteStore(path)
    await store.open()
    before = rss_kib()
    start = time.perf_counter()
    now = utc_now()
    record = ConversationRecord(
        conversation_id=new_id,
        settings=ConversationSettings(provider="echo", model="echo"),
        created_at=now,
        updated_at=now,
        forked_from=BIG,
    )
    length = await store.fork_history(BIG, record, drop)
    elapsed = time.perf_counter() - start
    after = rss_kib()
    assert record.preview is not None
    await store.close()
    print(json.dumps({"fork_ms": elapsed * 1000, "fork_rss_kib": after - before, "length": length}))


def bench_fork(path: Path, items: int, rows: list[tuple[str, str, str]]) -> None:
    """forkConversation of the big stored conversation (fresh child processes, best of 3)."""
    for drop in (0, 1):
        results = []
        for run in range(3):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--fork-child",
                    str(path),
                    f"fork-{drop}-{run}",
                    str(drop),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(out))
        fork = min(r["fork_ms"] for r in results)
        rss = max(r["fork_rss_kib"] for r in results) / 1024
        rows.append(
            (
                f"fork ({items:,} items, dropLastMessages {drop}) in the store",
                f"{fork:7.2f} ms, {rss:.1f} MiB extra RSS",
                "info (was: read all + insert)",
            )
        )


def bench_resume(path: Path, items: int, rows: list[tuple[str, str, str]]) -> None:
    """Resume in fresh child processes (best of 3 for time; worst for memory)."""
    results = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, __file__, "--resume-child", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
    resume = min(r["resume_ms"] for r in results)
    resume_rss = max(r["resume_rss_kib"] for r in results) / 1024
    rows.append(
        (f"resume ({items:,} items): open+get+lease+tail {TAIL}", f"{resume:7.2f} ms", "<= 300 ms")
    )
    rows.append(("resume: extra RSS", f"{resume_rss:7.2f} MiB", "<= 50 MiB"))
    rows.append(("  of which open()", f"{min(r['open_ms'] for r in results):7.2f} ms", ""))
    full = min(r["full_ms"] for r in results)
    full_rss = max(r["full_rss_kib"] for r in results) / 1024
    rows.append(
        (
            f"read all {items:,} items (fork/export-like)",
            f"{full:7.2f} ms, {full_rss:.0f} MiB RSS",
            "info",
        )
    )


async def bench_commits(directory: Path, rows: list[tuple[str, str, str]]) -> None:
    """commit_turn throughput, one writer and 50 concurrent conversations."""
    store = SqliteStore(directory / "commits.sqlite3")
    await store.open()
    try:
        records = []
        for n in range(50):
            record = ConversationRecord(
                conversation_id=f"c{n}",
                settings=ConversationSettings(provider="echo", model="echo"),
                created_at=utc_now(),
                updated_at=utc_now(),
            )
            await store.create(record, [])
            records.append(record)

        async def commit(record: ConversationRecord, n: int) -> None:
            items = [message_item("user", f"hello {n}"), message_item("assistant", f"hello {n}")]
            record.updated_at = utc_now()
            record.history_length += 2
            record.last_seq += 4
            await store.commit_turn(record, items)

        await commit(records[0], -1)
        turns = 3000
        start = time.perf_counter()
        for n in range(turns):
            await commit(records[n % 50], n)
        sequential = turns / (time.perf_counter() - start)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for record in records:

                async def loop(record: ConversationRecord = record) -> None:
                    for n in range(turns // 50):
                        await commit(record, n)

                tg.start_soon(loop)
        concurrent = turns / (time.perf_counter() - start)
        assert await store.integrity_check() == ["ok"]
    finally:
        await store.close()
    rows.append(
        (
            "commit_turn, one after another",
            f"{sequential:8.0f} turns/s  ({1e6 / sequential:.0f} us/turn)",
            "info",
        )
    )
    rows.append(
        (
            "commit_turn, 50 conversations at once",
            f"{concurrent:8.0f} turns/s  ({1e6 / concurrent:.0f} us/turn)",
            "info",
        )
    )


async def main(args: argparse.Namespace) -> None:
    """Set up a store, run every benchmark and print the table."""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        path = directory / "bench.sqlite3"
        store = SqliteStore(path)
        await store.open()  # creates the schema
        await store.close()
        start = time.perf_counter()
        populate(path, args.conversations, args.items)
        setup = time.perf_counter() - start
        size = path.stat().st_size / 2**20
        rows: list[tuple[str, str, str]] = []
        await bench_list(path, rows)
        bench_resume(path, args.items, rows)
        bench_fork(path, args.items, rows)
        await bench_commits(directory, rows)
    print(
        f"store: {args.conversations:,} conversations + one of {args.items:,} items, "
        f"{size:.0f} MiB, loaded in {setup:.1f} s; sqlite {sqlite3.sqlite_version}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<40}  {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to put the temporary store")
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--resume-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fork-child", nargs=3, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.resume_child is not None:
        anyio.run(resume_child, parsed.resume_child)
    elif parsed.fork_child is not None:
        fork_path, fork_id, fork_drop = parsed.fork_child
        anyio.run(fork_child, Path(fork_path), fork_id, int(fork_drop))
    else:
        anyio.run(main, parsed)
