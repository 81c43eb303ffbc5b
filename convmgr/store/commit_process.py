"""The commit process: a child of the server that commits turns to the SQLite store.

Started by convmgr.store.commit_channel only, as main([STORE_PATH, PARENT_PID]).

Turn commits run here rather than on a thread of the server so that SQLite's
work never competes with the event loop for the GIL. Frames on both pipes are a
4-byte little-endian length and a marshal payload (parent and child run the
same interpreter). The first frame written is ("ready", pid); each frame read
is a list of turns, each (conversation id, summary values, items), and is
answered by a list of the same length: None for a committed turn, else the
error's message, or (reason, message) for a storage failure (sqlite_errors).
The process ends at the end of its input, or when its parent is gone
(whoever waited for the answers is gone too).
"""

import marshal
import os
import signal
import sqlite3
import struct
import sys
from typing import Any

from convmgr.store.sqlite_commit import BUSY_TIMEOUT_MS, TurnRows, commit_turns, configure
from convmgr.store.sqlite_errors import storage_reason
from convmgr.store.sqlite_rows import _item_rows

HEADER = struct.Struct("<I")

# A turn's answer: None (committed), the error's message, or (reason, message).
Answer = str | tuple[str, str] | None


def _read_exact(fd: int, size: int) -> bytes | None:
    """Exactly size bytes from fd, or None at the end of input."""
    parts: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_frame(fd: int, value: Any) -> None:
    body = marshal.dumps(value)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


def _describe(error: Exception) -> Answer:
    """A failed turn's answer: the message, with the reason when the storage failed."""
    reason = storage_reason(error)
    return str(error) if reason is None else (reason, str(error))


def _answer(conn: sqlite3.Connection, turns: list[Any]) -> list[Answer]:
    """Commit a frame's turns; each one's answer (see the module)."""
    # Items are encoded here, off the server's event loop; a turn that does
    # not encode fails alone, as it would on the store's thread.
    answers: list[Answer] = [None] * len(turns)
    encoded: list[TurnRows] = []
    positions: list[int] = []
    for n, (cid, summary, items) in enumerate(turns):
        try:
            encoded.append((cid, summary, _item_rows(items)))
        except (TypeError, ValueError) as exc:
            answers[n] = str(exc)
        else:
            positions.append(n)
    try:
        errors = commit_turns(conn, encoded)
    except Exception as exc:  # the transaction as a whole: nothing was kept
        errors = [exc] * len(encoded)
    for n, error in zip(positions, errors, strict=True):
        if error is not None:
            answers[n] = _describe(error)
    return answers


def main(argv: list[str]) -> int:
    """Serve commit frames on stdin/stdout until the end of input; the exit status."""
    path, parent = argv[0], int(argv[1])
    # Signals for the server's process group (Ctrl-C) are the server's to
    # handle: it answers them by closing our input, which ends us cleanly.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    # The answers get a descriptor of their own; stray output goes to stderr.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        configure(conn)
    except sqlite3.Error as exc:
        sys.stderr.write(f"convmgr commit process: cannot open {path}: {exc}\n")
        return 1
    try:
        _write_frame(reply_fd, ("ready", os.getpid()))
        while True:
            header = _read_exact(0, HEADER.size)
            if header is None:
                return 0
            body = _read_exact(0, HEADER.unpack(header)[0])
            if body is None or os.getppid() != parent:
                return 0
            _write_frame(reply_fd, _answer(conn, marshal.loads(body)))
    except BrokenPipeError:
        return 0  # the server is gone
    finally:
        conn.close()
