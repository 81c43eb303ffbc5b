"""The store implementations the contract tests run against."""

import uuid
from pathlib import Path

from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore
from convmgr.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite", "postgresql")


def new_store(kind: str, directory: Path, pg_url: str | None = None) -> ConversationStore:
    """A fresh store of that kind (each SQLite one in its own file, each PostgreSQL one in
    its own database on the session's server, pg_url)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "postgresql":
        from convmgr.store.postgres import PostgresStore

        assert pg_url is not None
        return PostgresStore(pg_url)
    return SqliteStore(directory / f"{uuid.uuid4().hex}.sqlite3")
