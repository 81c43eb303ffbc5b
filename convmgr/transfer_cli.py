"""`convmgr export ID` and `convmgr import FILE`: stored conversations as JSON lines."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from pydantic_core import to_json

from convmgr.model import ConversationError

if TYPE_CHECKING:
    from convmgr.store.sqlite import SqliteStore


def _store_path(path: Path | None) -> Path:
    from convmgr.store.paths import default_store_path

    return path or default_store_path()


def _store(path: Path) -> "SqliteStore":
    from convmgr.store.sqlite import SqliteStore

    return SqliteStore(path)


def export_command(store_path: Path | None, conversation_id: str) -> int:
    """Print one stored conversation: its settings line, then its history items."""
    from convmgr.store.sqlite import StoreOpenError
    from convmgr.transfer import export_conversation

    path = _store_path(store_path)
    if not path.exists():
        # Opening would create an empty store: reading needs none.
        sys.stderr.write(f"convmgr export: no store at {path}\n")
        return 1

    async def run() -> None:
        store = _store(path)
        await store.open()
        try:
            async for line in export_conversation(store, conversation_id):
                # JSON has no NaN or Infinity: a value an older version stored is null.
                sys.stdout.write(to_json(line, inf_nan_mode="null").decode() + "\n")
        finally:
            await store.close()

    try:
        anyio.run(run)
    except (StoreOpenError, ConversationError) as exc:
        sys.stderr.write(f"convmgr export: {exc}\n")
        return 1
    except BrokenPipeError:
        return 0
    return 0


def import_command(store_path: Path | None, file: Path) -> int:
    """Store a conversation from an export file (or - for stdin); prints its id."""
    from convmgr.store.sqlite import StoreOpenError
    from convmgr.transfer import import_conversation

    async def run() -> str:
        store = _store(_store_path(store_path))
        await store.open()
        try:
            if str(file) == "-":
                return await import_conversation(store, sys.stdin)
            with file.open(encoding="utf-8") as lines:
                return await import_conversation(store, lines)
        finally:
            await store.close()

    try:
        conversation_id = anyio.run(run)
    except (StoreOpenError, ConversationError, ValueError, OSError) as exc:
        sys.stderr.write(f"convmgr import: {file}: {exc}\n")
        return 1
    sys.stdout.write(conversation_id + "\n")
    return 0
