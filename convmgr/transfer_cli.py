"""`convmgr export ID` and `convmgr import FILE`: stored conversations as JSON lines."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from pydantic_core import to_json

from convmgr.model import ConversationError

if TYPE_CHECKING:
    from convmgr.store.base import ConversationStore


def _store_path(flag: str | Path | None) -> str | Path:
    """The store in effect: --store, $CONVMGR_STORE, [store] url, the default."""
    from convmgr.providers.config import ConfigError, load_config
    from convmgr.store.location import store_target

    try:
        config = load_config(None)
    except ConfigError:
        config = None  # export and import need no providers: a bad file is serve's to report
    return store_target(flag, None if config is None else config.store.url)


def _store(target: str | Path) -> "ConversationStore":
    from convmgr.store.location import make_store

    return make_store(target)


def export_command(store_path: str | Path | None, conversation_id: str) -> int:
    """Print one stored conversation: its settings line, then its history items."""
    from convmgr.store.errors import StoreOpenError
    from convmgr.transfer import export_conversation

    path = _store_path(store_path)
    if isinstance(path, Path) and not path.exists():
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


def import_command(store_path: str | Path | None, file: Path) -> int:
    """Store a conversation from an export file (or - for stdin); prints its id."""
    from convmgr.store.errors import StoreOpenError
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
