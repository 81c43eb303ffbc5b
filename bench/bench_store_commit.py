"""Micro-benchmark of SqliteStore.commit_turn in-process (not a test).

Usage: python bench/bench_store_commit.py [--conversations N] [--turns N] [--rounds N]
       [--dir DIR]

Two measurements on a fresh store file per round:
- "serial": one conversation commits turn after turn (a batch of one each
  time): the full per-turn path, event loop hop included;
- "concurrent": N conversations commit at once, lock-step per conversation, as
  the server does under bench_store_server.py (group commit forms batches).
Each turn is the two items of a short echo turn (user message + assistant
reply), as the manager commits them. Reports microseconds of wall time and of
process CPU time per turn.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from convmgr.model import (
    ConversationRecord,
    ConversationSettings,
    message_item,
    preview_of,
    utc_now,
)
from convmgr.store.sqlite import SqliteStore


def record(cid: str) -> ConversationRecord:
    """A fresh conversation record as newConversation makes it."""
    now = utc_now()
    return ConversationRecord(
        conversation_id=cid,
        settings=ConversationSettings(provider="echo", model="echo"),
        created_at=now,
        updated_at=now,
    )


async def run_turns(store: SqliteStore, rec: ConversationRecord, turns: int) -> None:
    """Commit `turns` echo turns to one conversation, one after another."""
    text = "word0 word1 word2 word3 word4"
    for _ in range(turns):
        items = [message_item("user", text), message_item("assistant", "echo: " + text)]
        rec.updated_at = utc_now()
        rec.history_length += len(items)
        rec.last_seq += 4
        if rec.preview is None:
            rec.preview = preview_of(items)
        await store.commit_turn(rec, items)


async def one_round(
    path: Path, conversations: int, turns: int
) -> tuple[float, float, float, float]:
    """(serial wall us, serial cpu us, concurrent wall us, concurrent cpu us) per turn."""
    store = SqliteStore(path)
    await store.open()
    try:
        records = [record(f"bench-{n}") for n in range(conversations)]
        for rec in records:
            await store.create(rec, [])
        serial = records[0]
        t0, c0 = time.perf_counter(), time.process_time()
        await run_turns(store, serial, turns * 5)
        t1, c1 = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for rec in records:
                tg.start_soon(run_turns, store, rec, turns)
        t2, c2 = time.perf_counter(), time.process_time()
        assert await store.integrity_check() == ["ok"]
    finally:
        await store.close()
    n_serial = turns * 5
    n_conc = conversations * turns
    return (
        (t1 - t0) / n_serial * 1e6,
        (c1 - c0) / n_serial * 1e6,
        (t2 - t1) / n_conc * 1e6,
        (c2 - c1) / n_conc * 1e6,
    )


def main() -> None:
    """Print the medians over the rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=100, help="turns per conversation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to put the temporary store")
    args = parser.parse_args()
    results: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for round_no in range(args.rounds):
            path = Path(tmp) / f"round-{round_no}.sqlite3"
            results.append(anyio.run(one_round, path, args.conversations, args.turns))
    cols = list(zip(*results, strict=True))
    print(
        f"serial: {statistics.median(cols[0]):6.1f} us wall, {statistics.median(cols[1]):6.1f} "
        f"us CPU per turn ({args.turns * 5} turns, one conversation)"
    )
    print(
        f"concurrent: {statistics.median(cols[2]):6.1f} us wall, "
        f"{statistics.median(cols[3]):6.1f} us CPU per turn "
        f"({args.conversations} conversations x {args.turns} turns)"
    )


if __name__ == "__main__":
    main()
