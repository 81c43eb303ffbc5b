"""A look at a store file without changing it: whether it exists, its schema version, its size."""

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from convmgr.store.sqlite_schema import SCHEMA_VERSION

_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What a store file is: `problem` says why convmgr could not use it."""

    path: Path
    exists: bool
    schema_version: int | None = None
    conversations: int | None = None
    problem: str | None = None


def inspect_store(path: Path) -> StoreInfo:
    """Read a store's schema version and size read-only; a missing file is not created."""
    if not path.exists():
        return StoreInfo(path, exists=False)
    if not path.is_file():
        return StoreInfo(path, True, problem="not a regular file")
    try:
        with open(path, "rb") as file:
            header = file.read(len(_MAGIC))
    except OSError as exc:
        return StoreInfo(path, True, problem=f"cannot read: {exc.strerror or exc}")
    if not header:
        # An empty file is what a store is before its first open.
        return StoreInfo(path, True, schema_version=0, conversations=0)
    if header != _MAGIC:
        return StoreInfo(path, True, problem="not a SQLite database")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return StoreInfo(path, True, problem=f"cannot open: {exc}")
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if tables and "schema_version" not in tables:
            return StoreInfo(path, True, problem="a SQLite database but not a convmgr store")
        row = conn.execute("SELECT version FROM schema_version").fetchone() if tables else None
        version = 0 if row is None else int(row[0])
        count = None
        if "conversations" in tables:
            count = int(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])
    except sqlite3.Error as exc:
        return StoreInfo(path, True, problem=f"cannot read: {exc}")
    finally:
        conn.close()
    problem = None
    if version > SCHEMA_VERSION:
        problem = f"schema version {version} is newer than this convmgr's ({SCHEMA_VERSION})"
    return StoreInfo(path, True, version, count, problem)
