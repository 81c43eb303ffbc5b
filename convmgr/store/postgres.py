"""The PostgreSQL store: one conversation store shared by convmgr processes on many hosts.

asyncpg (imported on open, so a SQLite start-up never pays for it) with a small
pool: the event loop never blocks on the database, and a slow query holds one
pooled connection, not the loop. A turn's commit is one statement (its own
transaction): the lease check, the summary update and the items insert in one
round trip. docs/architecture.md says why asyncpg, with numbers.

Leases: a row per open conversation with the holder's token, a generation
from a sequence and a heartbeat refreshed every lease_ttl_s / 3 on the
database's clock. A lease whose heartbeat is older than lease_ttl_s is taken
over (the holder died, or lost the database). Every write of a leased
conversation checks, in its own transaction, that the generation is still the
one this process took (fencing): a holder whose lease was taken over writes
nothing and learns it by LeaseLost.
"""

import asyncio
import builtins
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from convmgr.model import (
    CommitOutcomeUnknown,
    ConversationExists,
    ConversationLocked,
    ConversationNotFound,
    ConversationRecord,
    Item,
    LeaseLost,
    StorageFailed,
    is_user_message,
    preview_of,
)
from convmgr.store.errors import StoreClosedError, StoreOpenError
from convmgr.store.location import mask_url, url_host
from convmgr.store.memory import cut_page, decode_cursor
from convmgr.store.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from convmgr.store.sqlite_rows import _dump, _summary

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL_S: Final = 30.0
POOL_SIZE: Final = 4
# How long one statement may run before it fails as `unavailable`.
COMMAND_TIMEOUT_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
_INT64_MAX: Final = 2**63 - 1
# Serialises migrations of concurrent openers (an arbitrary constant: "convmgr").
_MIGRATION_LOCK: Final = 0x636F6E766D6772

_COLUMNS: Final = (
    "conversation_id, settings, created_at, updated_at, forked_from, history_length, "
    "last_seq, preview"
)

# One turn, one statement. `fence` is this lease's row; the update runs only
# while the generation is ours (or no lease was taken: $8 is null). The items go
# after what is stored: the rows are the truth, whatever the caller's count says.
_COMMIT: Final = """
WITH fence AS (
    SELECT generation FROM leases WHERE conversation_id = $1 AND owner_token = $2 FOR SHARE
), upd AS (
    UPDATE conversations
    SET settings = $3, updated_at = $4, last_seq = $5, preview = $6,
        history_length = history_length + $7
    WHERE conversation_id = $1
      AND ($8::bigint IS NULL OR (SELECT generation FROM fence) = $8::bigint)
    RETURNING history_length - $7 AS base
), ins AS (
    INSERT INTO items (conversation_id, idx, json, is_user)
    SELECT $1, upd.base + t.ord - 1, t.j, t.u
    FROM upd, unnest($9::text[], $10::bool[]) WITH ORDINALITY AS t(j, u, ord)
)
SELECT (SELECT base FROM upd), (SELECT generation FROM fence),
       EXISTS (SELECT 1 FROM conversations WHERE conversation_id = $1)
"""

# Take (or renew) a lease: a new row, ours already, or one whose holder has not
# beaten for $4 seconds by the database's clock. No row back: someone else's.
_TAKE_LEASE: Final = """
INSERT INTO leases AS l (conversation_id, owner_token, holder, generation, heartbeat_at,
                         acquired_at)
VALUES ($1, $2, $3, nextval('lease_generations'), now(), now())
ON CONFLICT (conversation_id) DO UPDATE
SET owner_token = excluded.owner_token, holder = excluded.holder,
    generation = excluded.generation, heartbeat_at = now(), acquired_at = now()
WHERE l.owner_token = excluded.owner_token
   OR l.heartbeat_at < now() - make_interval(secs => $4)
RETURNING generation
"""


def _holder_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class PostgresStore:
    """Conversations in a PostgreSQL database, shared by processes on any host."""

    def __init__(
        self, url: str, *, lease_ttl_s: float = DEFAULT_LEASE_TTL_S, pool_size: int = POOL_SIZE
    ) -> None:
        self.url = url
        self.lease_ttl_s = lease_ttl_s
        self._pool_size = pool_size
        self._pool: Any = None
        self._token = secrets.token_hex(16)
        self._holder = _holder_name()
        # The generation of each lease this store holds: every write of a
        # leased conversation is checked against it.
        self._generations: dict[str, int] = {}
        # Conversations whose lease another process took over: never written again
        # by this process (unless it takes the lease back).
        self._lost: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        # Called with a conversation id when its lease is found taken over.
        self.on_lease_lost: Callable[[str], None] | None = None

    @property
    def persistent(self) -> bool:
        """Conversations outlive the process."""
        return True

    def __repr__(self) -> str:
        return f"PostgresStore({mask_url(self.url)!r})"

    @property
    def display(self) -> str:
        """The URL with its password masked."""
        return mask_url(self.url)

    # --- plumbing -------------------------------------------------------------

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreClosedError(f"store {self.display} is not open")
        return self._pool

    async def _call(self, func: Callable[[Any], Any], *, retry: bool = False) -> Any:
        """Run func(connection) on a pooled connection; StorageFailed for database failures.

        retry: func writes nothing (or nothing twice), so a connection lost
        under it (the database restarted) is tried once more on a new one.
        """
        pool = self._require_pool()
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                async with pool.acquire() as conn:
                    return await func(conn)
            except Exception as exc:
                failed = _storage_failed(exc)
                if failed is None:
                    raise
                if failed.reason == "unavailable" and attempt + 1 < attempts:
                    log.info("store %s: retrying after: %s", self.display, exc)
                    continue
                raise failed from exc
        raise AssertionError("unreachable")

    # --- open / close ---------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start the heartbeat; StoreOpenError if not."""
        if self._pool is not None:
            return
        import asyncpg

        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                # Statement caching breaks behind PgBouncer in transaction mode;
                # convmgr's statements are few, the cache costs nothing here.
                statement_cache_size=100,
            )
        except Exception as exc:
            raise StoreOpenError(
                f"cannot connect to PostgreSQL at {url_host(self.url)}: {_one_line(exc)}"
            ) from None
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
        except StoreOpenError:
            await pool.close()
            raise
        except Exception as exc:
            await pool.close()
            raise StoreOpenError(
                f"cannot open store at {url_host(self.url)}: {_one_line(exc)}"
            ) from None
        self._pool = pool
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _migrate(self, conn: Any) -> None:
        """Bring the schema up to SCHEMA_VERSION in one transaction, one opener at a time."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            tables = {
                row[0]
                for row in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
            if "conversations" in tables and "schema_version" not in tables:
                raise StoreOpenError(
                    f"store {self.display} has a conversations table but is not a convmgr store"
                )
            if "schema_version" not in tables:
                await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = int(await conn.fetchval("SELECT version FROM schema_version"))
            if version > SCHEMA_VERSION:
                raise StoreOpenError(
                    f"store {self.display} has schema version {version}, newer than this "
                    f"convmgr understands ({SCHEMA_VERSION}); upgrade convmgr"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    await conn.execute(statement)
                await conn.execute("UPDATE schema_version SET version = $1", step + 1)
                log.info("store %s: migrated schema to version %d", self.display, step + 1)

    async def close(self) -> None:
        """Release this store's leases and close the pool (idempotent)."""
        pool, self._pool = self._pool, None
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
        if pool is None:
            return
        self._generations.clear()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                await conn.execute("DELETE FROM leases WHERE owner_token = $1", self._token)
        except Exception as exc:
            # Left behind, they expire after lease_ttl_s and are taken over.
            log.warning("store %s: could not release leases at close: %s", self.display, exc)
        try:
            await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
        except (TimeoutError, Exception):
            pool.terminate()

    # --- heartbeat --------------------------------------------------------------

    async def _beat(self) -> None:
        """Refresh this store's leases every lease_ttl_s / 3; notice those taken over."""
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database is away: fencing keeps a late writer out.
                log.warning("store %s: lease heartbeat failed: %s", self.display, exc)

    async def heartbeat(self) -> builtins.list[str]:
        """Refresh this store's leases now; the conversations whose lease was lost."""
        if not self._generations:
            return []

        async def beat(conn: Any) -> Any:
            return await conn.fetch(
                "UPDATE leases SET heartbeat_at = now() WHERE owner_token = $1 "
                "RETURNING conversation_id, generation",
                self._token,
            )

        rows = await self._call(beat, retry=True)
        held = {row[0]: row[1] for row in rows}
        lost = [cid for cid, gen in self._generations.items() if held.get(cid) != gen]
        for cid in lost:
            self._lose(cid)
        return lost

    def watch_leases(self, lost: Callable[[str], None]) -> None:
        """Have `lost(id)` called when another process takes over one of our leases."""
        self.on_lease_lost = lost

    def _lose(self, conversation_id: str) -> None:
        if self._generations.pop(conversation_id, None) is None:
            return
        self._lost.add(conversation_id)
        log.warning("store %s: lease on %s was taken over", self.display, conversation_id)
        callback = self.on_lease_lost
        if callback is not None:
            callback(conversation_id)

    # --- conversations ----------------------------------------------------------

    async def create(
        self, record: ConversationRecord, items: Sequence[Item], *, lease: bool = False
    ) -> None:
        """Store a new conversation with its initial history; ConversationExists if taken."""
        texts, users = _item_columns(items)
        row = _record_row(record, len(items))

        async def create(conn: Any) -> int | None:
            async with conn.transaction():
                await self._insert_conversation(conn, record.conversation_id, row)
                if texts:
                    await conn.execute(
                        "INSERT INTO items (conversation_id, idx, json, is_user) "
                        "SELECT $1, t.ord - 1, t.j, t.u "
                        "FROM unnest($2::text[], $3::bool[]) WITH ORDINALITY AS t(j, u, ord)",
                        record.conversation_id,
                        texts,
                        users,
                    )
                return await self._take_lease(conn, record.conversation_id) if lease else None

        generation = await self._call(create)
        if generation is not None:
            self._generations[record.conversation_id] = generation
            self._lost.discard(record.conversation_id)

    @staticmethod
    async def _insert_conversation(conn: Any, conversation_id: str, row: tuple[Any, ...]) -> None:
        import asyncpg

        try:
            await conn.execute(
                f"INSERT INTO conversations ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *row,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConversationExists(conversation_id) from exc

    async def fork_history(
        self,
        source_id: str,
        record: ConversationRecord,
        drop_last_messages: int,
        *,
        lease: bool = False,
    ) -> int:
        """Create the fork with a truncated copy of the source's items, inside the database."""
        drop = max(0, drop_last_messages)
        fork = replace(record)

        async def run(conn: Any) -> tuple[int, str | None, int | None]:
            async with conn.transaction():
                found = await conn.fetchval(
                    "SELECT 1 FROM conversations WHERE conversation_id = $1", _text(source_id)
                )
                if found is None:
                    raise ConversationNotFound(source_id)
                if drop == 0:
                    last = await conn.fetchval(
                        "SELECT max(idx) FROM items WHERE conversation_id = $1", _text(source_id)
                    )
                    cut = 0 if last is None else int(last) + 1
                else:
                    found_cut = await conn.fetchval(
                        "SELECT idx FROM items WHERE conversation_id = $1 AND is_user "
                        "ORDER BY idx DESC LIMIT 1 OFFSET $2",
                        _text(source_id),
                        drop - 1,
                    )
                    cut = 0 if found_cut is None else int(found_cut)
                first_user = await conn.fetchval(
                    "SELECT json FROM items WHERE conversation_id = $1 AND is_user AND idx < $2 "
                    "ORDER BY idx LIMIT 1",
                    _text(source_id),
                    cut,
                )
                fork.preview = None if first_user is None else preview_of([json.loads(first_user)])
                await self._insert_conversation(conn, fork.conversation_id, _record_row(fork, cut))
                await conn.execute(
                    "INSERT INTO items (conversation_id, idx, json, is_user) "
                    "SELECT $1, idx, json, is_user FROM items "
                    "WHERE conversation_id = $2 AND idx < $3",
                    _text(fork.conversation_id),
                    _text(source_id),
                    cut,
                )
                generation = await self._take_lease(conn, fork.conversation_id) if lease else None
                return cut, fork.preview, generation

        length, preview, generation = await self._call(run)
        if generation is not None:
            self._generations[record.conversation_id] = generation
            self._lost.discard(record.conversation_id)
        record.history_length = length
        record.preview = preview
        return int(length)

    async def commit_turn(self, record: ConversationRecord, items: Sequence[Item]) -> None:
        """Append one turn's items and save the record's summary, in one statement.

        LeaseLost when this process's lease was taken over: nothing is written.
        A connection lost under the statement is resolved by reading back the
        summary it wrote; CommitOutcomeUnknown when that cannot be read either.
        """
        cid = record.conversation_id
        if cid in self._lost:
            raise LeaseLost(cid)
        summary = _summary(record)
        texts, users = _item_columns(items)
        generation = self._generations.get(cid)
        args = (_text(cid), self._token, *_summary_args(summary), len(texts), generation)

        async def commit(conn: Any) -> Any:
            return await conn.fetchrow(_COMMIT, *args, texts, users)

        try:
            row = await self._call(commit)
        except StorageFailed as failed:
            if failed.reason != "unavailable":
                raise
            if await self._landed(cid, summary, failed):
                log.warning("store %s: commit of %s landed despite: %s", self.display, cid, failed)
                return
            raise
        base, fence_generation, exists = row
        if base is None and exists and generation is not None:
            # The generation check refused the write: another process took over.
            self._lose(cid)
            raise LeaseLost(cid)
        del fence_generation

    async def _landed(self, cid: str, summary: tuple[Any, ...], failed: StorageFailed) -> bool:
        """Whether a commit whose connection was lost wrote its summary (read anew)."""

        async def read(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT settings, updated_at, last_seq, preview FROM conversations "
                "WHERE conversation_id = $1",
                _text(cid),
            )

        try:
            row = await self._call(read, retry=True)
        except StorageFailed as exc:
            raise CommitOutcomeUnknown(
                "unavailable", f"{failed}; the commit may have been saved: reading it back failed"
            ) from exc
        return row is not None and tuple(row) == _summary_args(summary)

    async def save_records(self, records: Sequence[ConversationRecord]) -> None:
        """Save several records' summaries/settings in one transaction; unknown ids ignored.

        A record whose lease this process lost is left as it is.
        """
        if not records:
            return
        rows = [
            (
                *_summary_args(_summary(record)),
                _text(record.conversation_id),
                self._generations.get(record.conversation_id),
                self._token,
            )
            for record in records
        ]

        async def save(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(
                    "UPDATE conversations SET settings = $1, updated_at = $2, last_seq = $3, "
                    "preview = $4 WHERE conversation_id = $5 AND ($6::bigint IS NULL OR "
                    "EXISTS (SELECT 1 FROM leases WHERE conversation_id = $5 "
                    "AND owner_token = $7 AND generation = $6::bigint))",
                    rows,
                )

        await self._call(save)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """The stored record, or None."""

        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM conversations WHERE conversation_id = $1",
                _text(conversation_id),
            )

        row = await self._call(get, retry=True)
        return None if row is None else _record_from_row(row)

    async def read_items(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        """History items [offset, offset + limit) in order; all from offset when limit is None."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        if offset > _INT64_MAX:
            return []
        if limit is not None and limit > _INT64_MAX:
            limit = None

        async def read(conn: Any) -> Any:
            return await conn.fetch(
                "SELECT json FROM items WHERE conversation_id = $1 AND idx >= $2 "
                "ORDER BY idx LIMIT $3",
                _text(conversation_id),
                offset,
                limit,
            )

        rows = await self._call(read, retry=True)
        loads = json.loads
        return [loads(row[0]) for row in rows]

    async def list(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ConversationRecord], str | None]:
        """A page of records, newest updated_at first, and the cursor of the next page."""
        after = None if cursor is None else decode_cursor(cursor)
        limit = max(0, limit)

        async def page(conn: Any) -> Any:
            # One row more than asked tells whether a next page exists.
            if after is None:
                return await conn.fetch(
                    f"SELECT {_COLUMNS} FROM conversations "
                    "ORDER BY updated_at DESC, conversation_id DESC LIMIT $1",
                    limit + 1,
                )
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM conversations "
                "WHERE (updated_at, conversation_id) < ($1, $2) "
                "ORDER BY updated_at DESC, conversation_id DESC LIMIT $3",
                _text(after[0]),
                _text(after[1]),
                limit + 1,
            )

        rows = await self._call(page, retry=True)
        return cut_page([_record_from_row(row) for row in rows], limit)

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its history; ConversationLocked if another process has it."""
        cid = _text(conversation_id)

        async def delete(conn: Any) -> bool:
            async with conn.transaction():
                holder = await conn.fetchval(
                    "SELECT holder FROM leases WHERE conversation_id = $1 AND owner_token <> $2 "
                    "AND heartbeat_at >= now() - make_interval(secs => $3) FOR UPDATE",
                    cid,
                    self._token,
                    self.lease_ttl_s,
                )
                if holder is not None:
                    raise ConversationLocked(conversation_id, holder)
                await conn.execute("DELETE FROM items WHERE conversation_id = $1", cid)
                await conn.execute("DELETE FROM leases WHERE conversation_id = $1", cid)
                status = await conn.execute(
                    "DELETE FROM conversations WHERE conversation_id = $1", cid
                )
                return bool(status != "DELETE 0")

        deleted = await self._call(delete)
        self._generations.pop(conversation_id, None)
        return bool(deleted)

    # --- leases -------------------------------------------------------------------

    async def acquire(self, conversation_id: str) -> None:
        """Take this process's lease; ConversationLocked if a live holder has it.

        A holder that has not beaten for lease_ttl_s (by the database's clock)
        is taken over.
        """

        async def take(conn: Any) -> int:
            async with conn.transaction():
                return await self._take_lease(conn, conversation_id)

        self._generations[conversation_id] = await self._call(take)
        self._lost.discard(conversation_id)

    async def _take_lease(self, conn: Any, conversation_id: str) -> int:
        """Inside a transaction: this store's lease, its generation; ConversationLocked if held."""
        generation = await conn.fetchval(
            _TAKE_LEASE, _text(conversation_id), self._token, self._holder, self.lease_ttl_s
        )
        if generation is None:
            holder = await conn.fetchval(
                "SELECT holder FROM leases WHERE conversation_id = $1", _text(conversation_id)
            )
            raise ConversationLocked(conversation_id, holder)
        return int(generation)

    async def release(self, conversation_id: str) -> None:
        """Give up this process's lease on a conversation."""
        self._generations.pop(conversation_id, None)

        async def release(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM leases WHERE conversation_id = $1 AND owner_token = $2",
                _text(conversation_id),
                self._token,
            )

        await self._call(release, retry=True)

    def holds(self, conversation_id: str) -> bool:
        """Whether this store believes it holds the conversation's lease."""
        return conversation_id in self._generations

    # --- maintenance -----------------------------------------------------------------

    async def schema_version(self) -> int:
        """The schema version of the open store."""

        async def version(conn: Any) -> int:
            return int(await conn.fetchval("SELECT version FROM schema_version"))

        return int(await self._call(version, retry=True))


def inspect_postgres(url: str) -> tuple[int | None, int | None, str | None]:
    """(schema version, conversations, problem) of a PostgreSQL store, read without changing it.

    The version is None when the database has no convmgr schema yet.
    """
    import asyncpg

    async def look() -> tuple[int | None, int | None, str | None]:
        try:
            conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            return None, None, f"cannot connect to {url_host(url)}: {_one_line(exc)}"
        try:
            tables = {
                row[0]
                for row in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
            if "schema_version" not in tables:
                if "conversations" in tables:
                    return None, None, "a conversations table, but not a convmgr store"
                return None, None, None
            version = int(await conn.fetchval("SELECT version FROM schema_version"))
            count = None
            if "conversations" in tables:
                count = int(await conn.fetchval("SELECT count(*) FROM conversations"))
            problem = None
            if version > SCHEMA_VERSION:
                problem = (
                    f"schema version {version} is newer than this convmgr's ({SCHEMA_VERSION})"
                )
            return version, count, problem
        except Exception as exc:
            return None, None, f"cannot read: {_one_line(exc)}"
        finally:
            await conn.close()

    return asyncio.run(look())


# --- rows ----------------------------------------------------------------------------


def _text(value: str) -> str:
    """A string as PostgreSQL text stores it: NUL escaped (text cannot hold one).

    Escaped as U+FFFF U+0030; a literal U+FFFF is doubled first so that the
    mapping is one to one (and so is the order of strings without either).
    """
    if "\x00" not in value and "\uffff" not in value:
        return value
    return value.replace("\uffff", "\uffff\uffff").replace("\x00", "\uffff0")


def _untext(value: str | None) -> str | None:
    if value is None or "\uffff" not in value:
        return value
    out: builtins.list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\uffff":
            following = next(chars, "")
            out.append("\x00" if following == "0" else following)
        else:
            out.append(char)
    return "".join(out)


def _item_columns(items: Sequence[Item]) -> tuple[builtins.list[str], builtins.list[bool]]:
    """Each item's JSON text and whether it is a user message (the fork's marker)."""
    return [_dump(item) for item in items], [is_user_message(item) for item in items]


def _summary_args(summary: tuple[Any, ...]) -> tuple[Any, ...]:
    settings, updated_at, last_seq, preview = summary
    return (settings, _text(updated_at), last_seq, None if preview is None else _text(preview))


def _record_row(record: ConversationRecord, history_length: int) -> tuple[Any, ...]:
    """A new conversation's row, in _COLUMNS' order."""
    return (
        _text(record.conversation_id),
        _dump(record.settings.given()),
        _text(record.created_at),
        _text(record.updated_at),
        None if record.forked_from is None else _text(record.forked_from),
        history_length,
        record.last_seq,
        None if record.preview is None else _text(record.preview),
    )


def _record_from_row(row: Sequence[Any]) -> ConversationRecord:
    from convmgr.model import ConversationSettings

    return ConversationRecord(
        conversation_id=_untext(row[0]) or "",
        settings=ConversationSettings.from_given(json.loads(row[1])),
        created_at=_untext(row[2]) or "",
        updated_at=_untext(row[3]) or "",
        forked_from=_untext(row[4]),
        history_length=int(row[5]),
        last_seq=int(row[6]),
        preview=_untext(row[7]),
    )


# SQLSTATE classes that are the protocol's storage failures.
_REASONS: Final[dict[str, str]] = {
    "08": "unavailable",  # connection exception
    "57": "unavailable",  # operator intervention: shutdown, cannot connect now
    "53": "disk_full",  # insufficient resources (53100 disk full)
    "58": "io_error",  # system error
    "XX": "corrupt",  # internal error, data corrupted
    "40": "unavailable",  # a serialization failure or deadlock: try again
}


def _storage_failed(exc: BaseException) -> StorageFailed | None:
    """StorageFailed for a driver error that is a storage failure, else None."""
    if isinstance(exc, StorageFailed):
        return exc
    import asyncpg

    detail = _one_line(exc)
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        reason = _REASONS.get(state[:2])
        if state == "53100":
            reason = "disk_full"
        return None if reason is None else StorageFailed(reason, detail)
    if isinstance(
        exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    ):
        # The connection went away (the database restarted) or never came.
        return StorageFailed("unavailable", detail)
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
