"""SQLite errors as the protocol's storage failures (-32006 with data.reason).

The one mapping from SQLite result codes to StorageFailed reasons.
"""

import sqlite3
from typing import Final

from convmgr.model import StorageFailed

# By primary result code (the low byte of an extended one).
_REASONS: Final[dict[int, str]] = {
    sqlite3.SQLITE_FULL: "disk_full",
    sqlite3.SQLITE_IOERR: "io_error",
    sqlite3.SQLITE_CORRUPT: "corrupt",
    sqlite3.SQLITE_NOTADB: "corrupt",
    sqlite3.SQLITE_CANTOPEN: "unavailable",
    # Another process held the write lock past busy_timeout.
    sqlite3.SQLITE_BUSY: "unavailable",
    sqlite3.SQLITE_LOCKED: "unavailable",
    # The file or its directory became read-only, or was moved away.
    sqlite3.SQLITE_READONLY: "unavailable",
    sqlite3.SQLITE_PERM: "unavailable",
    sqlite3.SQLITE_PROTOCOL: "unavailable",
}


def storage_reason(exc: BaseException) -> str | None:
    """The StorageFailed reason of a SQLite error, or None when it is not a storage failure."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    return _REASONS.get(code & 0xFF)


def storage_failed(exc: BaseException) -> StorageFailed | None:
    """StorageFailed for a SQLite error that is a storage failure, else None."""
    reason = storage_reason(exc)
    return None if reason is None else StorageFailed(reason, str(exc))
