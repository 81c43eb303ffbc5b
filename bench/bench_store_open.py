#!/usr/bin/env python3
"""What the store costs at start-up: cold start with --store, and PRAGMA quick_check (not a test).

    python bench/bench_store_open.py [--conversations N] [--items N] [--runs N] [--root DIR]

Builds a store of N conversations x M items (default 100 x 1,000: 100k items),
then measures, each as a median over --runs:
- PRAGMA quick_check on it, from a connection of our own (page cache warm);
- spawn -> `initialize` answered, with `--store` on that store and on a new file;
- the first store request right after `initialize` (getConversation of a stored
  conversation), which waits for whatever the store's thread does first;
- end of input -> exit, right after `initialize`.
--root picks the convmgr source tree to run (default: this checkout).
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import sys
import anyio
from convmgr.model import ConversationRecord, ConversationSettings, message_item, utc_now
from convmgr.store.sqlite import SqliteStore

async def main(path, conversations, n):
    store = SqliteStore(path)
    await store.open()
    for c in range(conversations):
        items = [message_item("user" if i % 2 == 0 else "assistant",
                              f"item {i}: " + "some words of a conversation " * 4)
                 for i in range(n)]
        now = utc_now()
        record = ConversationRecord(conversation_id=f"conv-{c}",
                                    settings=ConversationSettings(provider="echo", model="echo"),
                                    created_at=now, updated_at=now,
                                    history_length=n)
        await store.create(record, items)
    await store.close()

anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


def env_for(root: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONVMGR_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(root)
    env["CONVMGR_HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data")
    return env


def line(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg) + "\n").encode()


def one_start(root: Path, home: Path, store: Path) -> tuple[float, float, float]:
    """(spawn -> initialize, initialize -> first store answer, EOF -> exit), in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", "--store", str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env_for(root, home),
        cwd=home,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
    proc.stdin.flush()
    first = proc.stdout.readline()
    t1 = time.perf_counter()
    assert b'"protocolVersion"' in first, first
    get = {"jsonrpc": "2.0", "id": 2, "method": "getConversation"}
    proc.stdin.write(line({**get, "params": {"conversationId": "conv-0"}}))
    proc.stdin.flush()
    proc.stdout.readline()
    t2 = time.perf_counter()
    proc.stdin.close()
    proc.stdout.read()
    proc.wait(60)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        home = Path(tmp)
        big = home / "big.sqlite3"
        subprocess.run(
            [sys.executable, "-c", BUILD, str(big), str(args.conversations), str(args.items)],
            env=env_for(root, home),
            check=True,
        )
        checks = []
        for _ in range(args.runs):
            conn = sqlite3.connect(big)
            t0 = time.perf_counter()
            found = conn.execute("PRAGMA quick_check(1)").fetchall()
            checks.append(time.perf_counter() - t0)
            conn.close()
            assert found == [("ok",)], found
        mib = big.stat().st_size / 2**20
        total = args.conversations * args.items
        print(f"root: {root}")
        print(f"store: {total:,} items, {mib:.0f} MiB")
        print(
            f"PRAGMA quick_check: median {statistics.median(checks) * 1000:.0f} ms, "
            f"max {max(checks) * 1000:.0f} ms"
        )
        for name, store in ((f"{total:,}-item store", big), ("new store", None)):
            runs = []
            for n in range(args.runs + 2):
                path = store if store is not None else home / f"new-{n}.sqlite3"
                result = one_start(root, home, path)
                if n >= 2:  # two warm-up runs (page cache, .pyc)
                    runs.append(result)
            init, first, exit_ = (sorted(x * 1000 for x in col) for col in zip(*runs, strict=True))
            print(
                f"{name}: spawn -> initialize median {statistics.median(init):.0f} ms "
                f"(min {init[0]:.0f}, max {init[-1]:.0f}); first store answer after it "
                f"median {statistics.median(first):.0f} ms (max {first[-1]:.0f}); "
                f"EOF -> exit median {statistics.median(exit_):.0f} ms"
            )


if __name__ == "__main__":
    main()
