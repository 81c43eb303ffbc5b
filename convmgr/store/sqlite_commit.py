"""Turn commits on the store's SQLite connection: many turns, one transaction.

A turn reaches here as a TurnRows: the conversation id, the summary values in
_SUMMARY_SET's order, and the turn's items as one JSON array text (encoded on
the event loop by sqlite_rows._items_json) with their count. A batch's items
are one statement whatever their number: SQLite splits the JSON into rows, so
the thread hands the GIL to the event loop and back once for them, not once
per item.

A COMMIT that raises leaves the outcome unknown: the transaction may have
reached the database file before the error. Such a commit is resolved by
reading back what it wrote; it is reported failed only when it did not land.
"""

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from convmgr.model import CommitOutcomeUnknown
from convmgr.store.sqlite_errors import storage_reason
from convmgr.store.sqlite_rows import _SUMMARY_COLUMNS, _SUMMARY_SET, _dump

# How long a writer waits for another process's write transaction to finish.
BUSY_TIMEOUT_MS: Final = 10_000

# WAL pages between automatic checkpoints (SQLite's default is 1,000), and the
# size the WAL file is cut back to after one; see configure().
WAL_AUTOCHECKPOINT_PAGES: Final = 8_000
JOURNAL_SIZE_LIMIT: Final = 64 * 1024 * 1024

# One turn's commit: conversation id, summary values, items JSON array, item count.
TurnRows = tuple[str, tuple[Any, ...], str, int]

# is_user of an item row (history.is_user_message, in SQL) from its JSON text.
# One json_extract, so the text is parsed once; the encoder writes both strings
# without escapes, so the array text is exact.
_IS_USER: Final = """json_extract({0}, '$.type', '$.role') = '["message","user"]'"""

# The items of a batch, bound once as {conversation id: [item, ...], ...}: they
# go after what is stored (the rows are the truth, whatever the caller's count
# says, and idx stays dense). A conversation deleted meanwhile gets nothing (as
# MemoryStore): the join finds no row.
_INSERT_ITEMS: Final = f"""
    INSERT INTO items (conversation_id, idx, json, is_user)
    SELECT c.conversation_id, c.history_length + i.key, i.value, {_IS_USER.format("i.value")}
    FROM json_each(?) AS t
    JOIN conversations AS c ON c.conversation_id = t.key
    JOIN json_each(t.value) AS i
"""

# A new conversation's items, bound as [item, ...]: at idx 0, 1, ...
INSERT_NEW_ITEMS: Final = f"""
    INSERT INTO items (conversation_id, idx, json, is_user)
    SELECT ?, key, value, {_IS_USER.format("value")}
    FROM json_each(?)
"""

_UPDATE_SUMMARY: Final = (
    f"UPDATE conversations SET {_SUMMARY_SET}, history_length = history_length + ? "
    "WHERE conversation_id = ?"
)


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
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite ends the transaction itself after some errors (a full disk,
    # say); a failed COMMIT may leave it open. Either way the next BEGIN works.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@dataclass
class _Witness:
    """What a transaction wrote that tells, read back later, whether it landed."""

    # An items row it inserted, and the conversations it wrote items to.
    rowid: int | None = None
    conversations: set[str] = field(default_factory=set)
    # Each conversation's summary as it wrote it (used when it inserted no item).
    summaries: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def add(self, other: "_Witness") -> None:
        """Take in what another part of the same transaction wrote."""
        if other.rowid is not None:
            self.rowid = other.rowid
        self.conversations |= other.conversations
        self.summaries.update(other.summaries)


def _commit(conn: sqlite3.Connection, write: Callable[[], _Witness]) -> None:
    """BEGIN IMMEDIATE, write(), COMMIT; raises when nothing was kept.

    An error at or after COMMIT is resolved by reading back write's witness:
    a transaction that landed is not reported as failed. When that read fails
    too, CommitOutcomeUnknown says so.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        witness = write()
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except Exception as exc:
        try:
            _rollback(conn)  # still open: the COMMIT did not happen
            landed = _landed(conn, witness)
        except Exception as unreadable:
            reason = storage_reason(exc) or storage_reason(unreadable) or "io_error"
            raise CommitOutcomeUnknown(
                reason, f"{exc}; the commit may have been saved: reading it back failed too"
            ) from exc
        if not landed:
            raise


def _landed(conn: sqlite3.Connection, witness: _Witness) -> bool:
    """Whether the database holds what the witness's transaction wrote (a new read).

    Only this process writes a conversation while it holds its lease, so an
    items row at the witness's rowid that belongs to one of its conversations
    was put there by that transaction.
    """
    if witness.rowid is not None:
        row = conn.execute(
            "SELECT conversation_id FROM items WHERE rowid = ?", (witness.rowid,)
        ).fetchone()
        return row is not None and row[0] in witness.conversations
    # No item: the summaries are all it wrote. Where they are stored as it
    # wrote them, the database holds what the transaction meant to.
    for cid, summary in witness.summaries.items():
        row = conn.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM conversations WHERE conversation_id = ?", (cid,)
        ).fetchone()
        if row is not None and tuple(row) != summary:
            return False
    return True


def commit_turns(conn: sqlite3.Connection, turns: Sequence[TurnRows]) -> list[Exception | None]:
    """Commit several turns in one transaction; each succeeds or fails alone.

    The whole batch is first written at once; should that fail (one bad
    turn), it is rolled back and redone one turn at a time, each under a
    savepoint of its own. Returns each turn's error (None: committed). An
    error of the transaction as a whole (the disk is full, the database is
    locked) is raised: nothing was kept, unless it is CommitOutcomeUnknown.
    """
    if len(turns) == 1:
        _commit(conn, lambda: _write_turns(conn, turns))
        return [None]
    try:
        _commit(conn, lambda: _write_turns(conn, turns))
    except CommitOutcomeUnknown:
        raise  # it may have landed: never written a second time
    except Exception:
        pass  # nothing was kept: redo one by one below
    else:
        return [None] * len(turns)
    errors: list[Exception | None] = []

    def write_each() -> _Witness:
        witness = _Witness()
        for turn in turns:
            conn.execute("SAVEPOINT turn")
            try:
                kept = _write_turns(conn, [turn])
            except Exception as exc:
                conn.execute("ROLLBACK TO turn")
                errors.append(exc)
            else:
                witness.add(kept)
                errors.append(None)
            conn.execute("RELEASE turn")
        return witness

    _commit(conn, write_each)
    return errors


def _write_turns(conn: sqlite3.Connection, turns: Sequence[TurnRows]) -> _Witness:
    """Several turns' writes, two statements in all whatever their number."""
    witness = _Witness()
    summaries = witness.summaries
    counts: dict[str, int] = {}
    arrays: dict[str, list[str]] = {}
    for cid, summary, items_json, count in turns:
        summaries[cid] = summary  # the last turn's, as if committed one by one
        counts[cid] = counts.get(cid, 0) + count
        if count:
            arrays.setdefault(cid, []).append(items_json)
    if arrays:
        # Turns of one conversation in one batch: one array, their items in order.
        batch = ",".join(
            f"{_dump(cid)}:{texts[0] if len(texts) == 1 else _join_arrays(texts)}"
            for cid, texts in arrays.items()
        )
        inserted = conn.execute(_INSERT_ITEMS, ("{" + batch + "}",))
        if inserted.rowcount > 0:
            witness.rowid = inserted.lastrowid
            witness.conversations = set(arrays)
    conn.executemany(
        _UPDATE_SUMMARY,
        [(*summary, counts[cid], cid) for cid, summary in summaries.items()],
    )
    return witness


def _join_arrays(texts: list[str]) -> str:
    """One JSON array of the elements of several non-empty ones."""
    return "[" + ",".join(text[1:-1] for text in texts) + "]"
