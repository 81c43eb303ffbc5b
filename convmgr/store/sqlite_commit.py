"""Turn commits on a SQLite connection, shared by the store's thread and its commit process.

A turn reaches here as (conversation id, summary values, item rows): the items
already encoded (sqlite_rows._item_rows) and the summary in _SUMMARY_SET's order.
"""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from convmgr.store.sqlite_rows import _SUMMARY_SET

# How long a writer waits for another process's write transaction to finish.
BUSY_TIMEOUT_MS: Final = 10_000

# WAL pages between automatic checkpoints (SQLite's default is 1,000), and the
# size the WAL file is cut back to after one; see configure().
WAL_AUTOCHECKPOINT_PAGES: Final = 8_000
JOURNAL_SIZE_LIMIT: Final = 64 * 1024 * 1024

# One turn's commit: conversation id, summary values, (item json, is_user) rows.
TurnRows = tuple[str, tuple[Any, ...], list[tuple[str, int]]]


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings every writer of the store uses (WAL is set on the file)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # NORMAL in WAL mode survives a crash of the process (what kill -9
    # does); only an OS crash or power loss can lose the last commits.
    conn.execute("PRAGMA synchronous = NORMAL")
    # Checkpoints run in the committing thread and copy every page written
    # since the last one back to the database, with two fsyncs. Turn commits
    # rewrite the same hot pages (the conversations rows, the tails of the
    # index B-trees) over and over: a longer interval copies each of them
    # once for many commits. This only changes when pages move from the WAL
    # to the database file, not when a commit is durable. The WAL file is
    # cut back to a bounded size after a checkpoint.
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    # IMMEDIATE takes the write lock up front, so a busy writer is waited for
    # (busy_timeout) instead of failing when a read would upgrade to a write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # SQLite ends the transaction itself after some errors (a full disk,
        # say); a failed COMMIT leaves it open. Either way the next BEGIN works.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def commit_turns(conn: sqlite3.Connection, turns: Sequence[TurnRows]) -> list[Exception | None]:
    """Commit several turns in one transaction; each succeeds or fails alone.

    The whole batch is first written with two statements; should that fail
    (one bad turn, or two turns of one conversation), it is rolled back and
    redone one turn at a time, each under a savepoint of its own. Returns
    each turn's error (None: committed). An error of the transaction as a
    whole (the disk is full, the database is locked) is raised: nothing was kept.
    """
    if len(turns) > 1:
        try:
            with write_transaction(conn):
                _write_turns(conn, turns)
        except sqlite3.Error:
            pass  # rolled back: redo one by one below
        else:
            return [None] * len(turns)
    errors: list[Exception | None] = []
    with write_transaction(conn):
        if len(turns) == 1:
            _write_turns(conn, turns)
            errors.append(None)
        else:
            for turn in turns:
                conn.execute("SAVEPOINT turn")
                try:
                    _write_turns(conn, [turn])
                except Exception as exc:
                    conn.execute("ROLLBACK TO turn")
                    errors.append(exc)
                else:
                    errors.append(None)
                conn.execute("RELEASE turn")
    return errors


def _write_turns(conn: sqlite3.Connection, turns: Sequence[TurnRows]) -> None:
    """Several turns' writes (of distinct conversations), two statements in all.

    Items go after what is stored, whatever the caller's count says: the rows
    are the truth and idx must stay dense. A conversation deleted meanwhile
    gets nothing (as MemoryStore): both statements select it by id.
    """
    conn.executemany(
        "INSERT INTO items (conversation_id, idx, json, is_user) "
        "SELECT conversation_id, history_length + ?, ?, ? FROM conversations "
        "WHERE conversation_id = ?",
        [
            (offset, row, user, cid)
            for cid, _, rows in turns
            for offset, (row, user) in enumerate(rows)
        ],
    )
    conn.executemany(
        f"UPDATE conversations SET {_SUMMARY_SET}, history_length = history_length + ? "
        "WHERE conversation_id = ?",
        [(*summary, len(rows), cid) for cid, summary, rows in turns],
    )
