"""The store implementations the contract tests run against."""

import uuid
from pathlib import Path

from convmgr.store.base import ConversationStore
from convmgr.store.memory import MemoryStore
from convmgr.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite")


def new_store(kind: str, directory: Path) -> ConversationStore:
    """A fresh store of that kind (each SQLite one in its own file)."""
    if kind == "memory":
        return MemoryStore()
    return SqliteStore(directory / f"{uuid.uuid4().hex}.sqlite3")
