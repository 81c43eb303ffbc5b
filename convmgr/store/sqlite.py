"""The SQLite store: conversations that survive restarts, crashes and a second process.

One connection, owned by one dedicated thread that runs the store's jobs in
order: the event loop never blocks on the database. Turn commits that queue up
while the thread is busy go into one transaction (group commit), so many
conversations finishing turns at once cost one hop and one commit. History
items are one row each, keyed by (conversation_id, idx): reading the tail of a
long history is an index range scan, never a full read.

Every SQLite error that is a storage failure (a full disk, an I/O error, a
corrupt file, a database locked for too long) reaches callers as StorageFailed.
A store that fails PRAGMA quick_check, run on the thread right after open(),
refuses every later operation as corrupt.
"""

import builtins
import json
import logging
import os
import random
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

from convmgr.model import (
    ConversationExists,
    ConversationLocked,
    ConversationNotFound,
    ConversationRecord,
    Item,
    StorageFailed,
    preview_of,
    utc_now,
)
from convmgr.store.db_thread import _DbThread, _Job
from convmgr.store.errors import StoreClosedError, StoreOpenError
from convmgr.store.memory import cut_page, decode_cursor
from convmgr.store.process_identity import _BOOT_ID, _proc_stat, _process_alive
from convmgr.store.sqlite_commit import (
    BUSY_TIMEOUT_MS,
    INSERT_NEW_ITEMS,
    commit_turns,
    configure,
    write_transaction,
)
from convmgr.store.sqlite_errors import storage_failed, storage_reason
from convmgr.store.sqlite_rows import (
    _COLUMNS,
    _SUMMARY_SET,
    _items_json,
    _record_from_row,
    _record_row,
    _summary,
)
from convmgr.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["SqliteStore", "StoreClosedError", "StoreOpenError"]

SQLITE_MAGIC: Final = b"SQLite format 3\x00"

# The largest integer SQLite stores (signed 64-bit).
_INT64_MAX: Final = 2**63 - 1

_PLACES: Final = ", ".join("?" * len(_COLUMNS.split(",")))

# Tokens of the stores open in this process: a lease row with our pid is alive
# exactly when its token is here (two stores in one process, as in tests).
_LIVE_TOKENS: set[str] = set()


class SqliteStore:
    """Conversations in one SQLite file (WAL), shared safely by several processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._thread: _DbThread | None = None
        # What PRAGMA quick_check found wrong (None: nothing, or not run yet),
        # and its job while queued or running (close() abandons it).
        self._corrupt: str | None = None
        self._check_job: _Job | None = None
        # Identifies this store's leases; the pid alone could be reused after a crash.
        self._token = secrets.token_hex(16)
        self._pid = os.getpid()
        info = _proc_stat(self._pid)
        self._start = None if info is None else info[1]

    @property
    def persistent(self) -> bool:
        """Conversations outlive the process."""
        return True

    # --- plumbing -----------------------------------------------------------

    async def _run(
        self, func: Callable[..., T], *args: Any, batchable: bool = False, read: bool = False
    ) -> T:
        """Run blocking database work on the store's thread; StorageFailed for storage errors.

        A read (read=True: func writes nothing) is abandoned when the caller is
        cancelled: interrupted if running, dropped if not started yet.
        """
        thread = self._thread
        if thread is None:
            raise StoreClosedError(f"store {self.path} is not open")
        try:
            return await thread.call(
                func, *args, batchable=batchable, interrupt=self._interrupt if read else None
            )
        except sqlite3.Error as exc:
            # The one place where the store's SQLite errors become the protocol's.
            failed = storage_failed(exc)
            if failed is None:
                raise
            raise failed from exc

    def _interrupt(self) -> None:
        """Stop the statement running on the connection (called from the event loop)."""
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"store {self.path} is not open")
        if self._corrupt is not None:
            raise StorageFailed("corrupt", self._corrupt)
        conn = self._conn
        if conn.in_transaction:
            # Left open by a commit that failed and could not be rolled back: its
            # writes must not be seen (nor kept) by whatever runs next.
            conn.execute("ROLLBACK")
        return conn

    # --- open / close ---------------------------------------------------------

    async def open(self) -> None:
        """Create the file if needed, switch to WAL and run migrations; StoreOpenError if not."""
        if self._thread is not None:
            return
        self._thread = thread = _DbThread(f"convmgr-store-{self.path.name}")
        try:
            await self._run(self._open_sync)
        except BaseException:
            thread.stop()
            self._thread = None
            raise
        # Checked on the thread, not awaited: the first answer (initialize) does
        # not wait for it, and every store operation queues behind it.
        self._check_job = thread.post(self._quick_check_sync, interrupt=self._interrupt)

    def _open_sync(self) -> None:
        if self._conn is not None:
            return
        path = self.path
        self._prepare_file(path)
        try:
            conn = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                check_same_thread=False,  # the limiter serialises all use
            )
        except sqlite3.Error as exc:
            raise StoreOpenError(f"cannot open store {path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry_while_locked(lambda: self._setup(conn))
        except sqlite3.Error as exc:
            conn.close()
            raise StoreOpenError(f"cannot open store {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        _LIVE_TOKENS.add(self._token)

    def _quick_check_sync(self) -> None:
        """PRAGMA quick_check; marks the store corrupt (see _db) when it fails."""
        conn = self._conn
        if conn is None:
            return
        try:
            # The first problem is enough: the store is refused whatever it is.
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(1)")]
        except sqlite3.Error as exc:
            if storage_reason(exc) != "corrupt":
                # Interrupted by close(), or locked: not a finding about the file.
                log.debug("store %s: quick_check did not finish: %s", self.path, exc)
                return
            found = [str(exc)]
        if found != ["ok"]:
            self._corrupt = f"store file is damaged ({'; '.join(found)[:200]})"
            log.error(
                "store %s is corrupt (PRAGMA quick_check: %s); every store request will "
                "fail with reason 'corrupt': restore the file from a backup",
                self.path,
                "; ".join(found)[:500],
            )

    def _setup(self, conn: sqlite3.Connection) -> None:
        """WAL, synchronous mode and migrations on a fresh connection."""
        # Refuse another program's database before anything writes to it
        # (switching to WAL rewrites the header).
        self._check_foreign(conn)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("store %s: WAL unavailable, journal mode is %s", self.path, mode)
        configure(conn)
        self._migrate(conn)

    @staticmethod
    def _retry_while_locked(step: Callable[[], None]) -> None:
        """Run step, again while the database is locked, for up to BUSY_TIMEOUT_MS.

        Two processes opening a new store at once race to switch it to WAL: SQLite
        answers "database is locked" at once there (no busy wait, which could
        deadlock), so the loser waits here and tries again.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005 + random.random() * 0.02)

    @staticmethod
    def _prepare_file(path: Path) -> None:
        """Check the path and create an empty owner-only file; never touch a foreign file."""
        directory = path.parent
        if not directory.exists():
            missing = [directory, *(p for p in directory.parents if not p.exists())]
            try:
                # Every directory we create is owner-only, not just the last one.
                for created in reversed(missing):
                    created.mkdir(mode=0o700, exist_ok=True)
                    os.chmod(created, 0o700)  # mkdir's mode is masked by the umask
            except OSError as exc:
                raise StoreOpenError(
                    f"cannot create store directory {directory}: {exc.strerror or exc}"
                ) from exc
        if not directory.is_dir():
            raise StoreOpenError(f"store directory {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            # WAL needs to create -wal and -shm files next to the database.
            raise StoreOpenError(f"store directory {directory} is not writable")
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StoreOpenError(f"cannot open store {path}: {exc.strerror or exc}") from exc
        if st is None:
            # SQLite would create a dangling link's target itself, with the
            # umask's mode (0644) instead of owner-only, wherever it points.
            SqliteStore._refuse_dangling_link(path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                # Another process created it meanwhile (SQLite handles that race),
                # or a link was put there meanwhile.
                SqliteStore._refuse_dangling_link(path)
                return
            except OSError as exc:
                raise StoreOpenError(f"cannot create store {path}: {exc.strerror or exc}") from exc
            os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask
            os.close(fd)
            return
        if not stat.S_ISREG(st.st_mode):
            raise StoreOpenError(f"store {path} is not a regular file")
        if st.st_size == 0:
            return
        try:
            with open(path, "rb") as file:
                header = file.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreOpenError(f"cannot read store {path}: {exc.strerror or exc}") from exc
        if header != SQLITE_MAGIC:
            raise StoreOpenError(f"store {path} is not a SQLite database")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreOpenError(f"store {path} is not writable")

    @staticmethod
    def _refuse_dangling_link(path: Path) -> None:
        """StoreOpenError when path is a symbolic link to nothing."""
        if path.is_symlink() and not path.exists():
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            raise StoreOpenError(
                f"store {path} is a symbolic link to {target}, which does not exist"
            )

    def _check_foreign(self, conn: sqlite3.Connection) -> None:
        """StoreOpenError when the database has tables but not ours."""
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if tables and "schema_version" not in tables:
            raise StoreOpenError(f"store {self.path} is a SQLite database but not a convmgr store")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema up to SCHEMA_VERSION, in one transaction."""
        with write_transaction(conn):
            # Checked again under the write lock: another process may be creating it.
            self._check_foreign(conn)
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if found is None:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreOpenError(
                    f"store {self.path} has schema version {version}, newer than this "
                    f"convmgr understands ({SCHEMA_VERSION}); upgrade convmgr"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (step + 1,))
                log.info("store %s: migrated schema to version %d", self.path, step + 1)

    async def close(self) -> None:
        """Finish queued writes, release this store's leases and close (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            check, self._check_job = self._check_job, None
            if check is not None:
                # A long quick_check must not hold up the exit (SIGTERM: < 1 s).
                thread.abandon(check)
            try:
                await thread.call(self._close_sync)
            finally:
                thread.stop()

    def _close_sync(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        _LIVE_TOKENS.discard(self._token)
        if self._corrupt is not None:
            # Write nothing more into a damaged file (it took no lease of ours).
            conn.close()
            return
        try:
            with write_transaction(conn):
                conn.execute("DELETE FROM leases WHERE owner_token = ?", (self._token,))
        except sqlite3.Error:
            # Leases left behind are recovered by the next opener (our pid is gone).
            log.exception("store %s: could not release leases at close", self.path)
        try:
            # Best effort: another process busy with the file can make it fail at once.
            conn.execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            log.debug("store %s: PRAGMA optimize at close: %s", self.path, exc)
        finally:
            conn.close()

    # --- conversations --------------------------------------------------------

    async def create(
        self, record: ConversationRecord, items: Sequence[Item], *, lease: bool = False
    ) -> None:
        """Store a new conversation with its initial history; ConversationExists if taken.

        With lease, this process's lease is taken in the same transaction.
        """
        await self._run(self._create_sync, record, _items_json(items), len(items), lease)

    def _create_sync(
        self, record: ConversationRecord, items_json: str, count: int, lease: bool
    ) -> None:
        conn = self._db()
        with write_transaction(conn):
            self._insert_conversation(conn, record, count)
            if count:
                conn.execute(INSERT_NEW_ITEMS, (record.conversation_id, items_json))
            if lease:
                self._take_lease(conn, record.conversation_id)

    @staticmethod
    def _insert_conversation(
        conn: sqlite3.Connection, record: ConversationRecord, history_length: int
    ) -> None:
        """The conversations row of a new conversation; ConversationExists if taken."""
        try:
            conn.execute(
                f"INSERT INTO conversations ({_COLUMNS}) VALUES ({_PLACES})",
                _record_row(record, history_length),
            )
        except sqlite3.IntegrityError as exc:
            raise ConversationExists(record.conversation_id) from exc

    async def fork_history(
        self,
        source_id: str,
        record: ConversationRecord,
        drop_last_messages: int,
        *,
        lease: bool = False,
    ) -> int:
        """Create the fork with a truncated copy of the source's items, inside the database.

        The cut is found on the partial index of user messages; the rows are
        copied by one INSERT ... SELECT. Sets record.history_length and
        record.preview; ConversationExists / ConversationNotFound as the protocol
        says. With lease, this process's lease is taken in the same transaction.
        """
        length, preview = await self._run(
            self._fork_history_sync, source_id, replace(record), max(0, drop_last_messages), lease
        )
        record.history_length = length
        record.preview = preview
        return length

    def _fork_history_sync(
        self, source_id: str, record: ConversationRecord, drop: int, lease: bool
    ) -> tuple[int, str | None]:
        conn = self._db()
        with write_transaction(conn):
            found = conn.execute(
                "SELECT history_length FROM conversations WHERE conversation_id = ?",
                (source_id,),
            ).fetchone()
            if found is None:
                raise ConversationNotFound(source_id)
            if drop == 0:
                # Everything: the rows are the truth, not the summary's count.
                last = conn.execute(
                    "SELECT max(idx) FROM items WHERE conversation_id = ?", (source_id,)
                ).fetchone()[0]
                cut = 0 if last is None else int(last) + 1
            else:
                # The drop-th user message from the end; the fork keeps what is before it.
                row = conn.execute(
                    "SELECT idx FROM items WHERE conversation_id = ? AND is_user = 1 "
                    "ORDER BY idx DESC LIMIT 1 OFFSET ?",
                    (source_id, drop - 1),
                ).fetchone()
                cut = 0 if row is None else int(row[0])
            first_user = conn.execute(
                "SELECT json FROM items WHERE conversation_id = ? AND is_user = 1 AND idx < ? "
                "ORDER BY idx LIMIT 1",
                (source_id, cut),
            ).fetchone()
            record.preview = None if first_user is None else preview_of([json.loads(first_user[0])])
            self._insert_conversation(conn, record, cut)
            conn.execute(
                "INSERT INTO items (conversation_id, idx, json, is_user) "
                "SELECT ?, idx, json, is_user FROM items "
                "WHERE conversation_id = ? AND idx < ? ORDER BY idx",
                (record.conversation_id, source_id, cut),
            )
            if lease:
                self._take_lease(conn, record.conversation_id)
        return cut, record.preview

    async def commit_turn(self, record: ConversationRecord, items: Sequence[Item]) -> None:
        """Append one turn's items and save the record's summary, in one transaction."""
        if "\x00" in record.conversation_id:
            # SQLite's JSON functions cut a string at a NUL: the batch could not name it.
            raise ValueError("a conversation id with a NUL character cannot take turns")
        # Encoded here, once per turn: a turn that does not encode fails alone.
        await self._run(
            self._commit_batch_sync,
            record.conversation_id,
            _summary(record),
            _items_json(items),
            len(items),
            batchable=True,
        )

    def _commit_batch_sync(self, jobs: builtins.list[_Job]) -> None:
        """Commit the queued commit_turn jobs in one transaction; each succeeds or fails alone."""
        try:
            errors = commit_turns(self._db(), [job.args for job in jobs])
        except BaseException as exc:
            # The transaction as a whole failed (or the store is closed): nothing
            # was kept, or (CommitOutcomeUnknown) whether it was cannot be told.
            for job in jobs:
                job.set_exception(exc)
            return
        for job, error in zip(jobs, errors, strict=True):
            if error is None:
                job.set_result(None)
            else:
                job.set_exception(error)

    async def save_records(self, records: Sequence[ConversationRecord]) -> None:
        """Save several records' summaries/settings in one transaction; unknown ids ignored."""
        if not records:
            return
        rows = [(*_summary(record), record.conversation_id) for record in records]
        await self._run(self._save_records_sync, rows)

    def _save_records_sync(self, rows: builtins.list[tuple[Any, ...]]) -> None:
        conn = self._db()
        with write_transaction(conn):
            conn.executemany(
                f"UPDATE conversations SET {_SUMMARY_SET} WHERE conversation_id = ?", rows
            )

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """The stored record, or None."""
        return await self._run(self._get_sync, conversation_id, read=True)

    def _get_sync(self, conversation_id: str) -> ConversationRecord | None:
        row = (
            self._db()
            .execute(
                f"SELECT {_COLUMNS} FROM conversations WHERE conversation_id = ?",
                (conversation_id,),
            )
            .fetchone()
        )
        return None if row is None else _record_from_row(row)

    async def read_items(
        self, conversation_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Item]:
        """History items [offset, offset + limit) in order; all from offset when limit is None."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        # Beyond SQLite's integers: nothing that far, or no limit at all.
        if offset > _INT64_MAX:
            return []
        if limit is not None and limit > _INT64_MAX:
            limit = None
        return await self._run(self._read_items_sync, conversation_id, offset, limit, read=True)

    def _read_items_sync(self, conversation_id: str, offset: int, limit: int | None) -> list[Item]:
        conn = self._db()
        # LIMIT, not idx < offset + limit: that sum overflows SQLite's 64-bit
        # integers for a limit near 2**63 (and idx is dense, so both agree).
        cursor = conn.execute(
            "SELECT json FROM items WHERE conversation_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
            (conversation_id, offset, -1 if limit is None else limit),
        )
        loads = json.loads
        return [loads(row[0]) for row in cursor]

    async def list(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ConversationRecord], str | None]:
        """A page of records, newest updated_at first, and the cursor of the next page.

        Raises ValueError for a cursor this store did not make.
        """
        after = None if cursor is None else decode_cursor(cursor)
        return await self._run(self._list_sync, after, max(0, limit), read=True)

    def _list_sync(
        self, after: tuple[str, str] | None, limit: int
    ) -> tuple[builtins.list[ConversationRecord], str | None]:
        conn = self._db()
        # One row more than asked tells whether a next page exists.
        if after is None:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM conversations "
                "ORDER BY updated_at DESC, conversation_id DESC LIMIT ?",
                (limit + 1,),
            ).fetchall()
        else:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM conversations "
                "WHERE (updated_at, conversation_id) < (?, ?) "
                "ORDER BY updated_at DESC, conversation_id DESC LIMIT ?",
                (after[0], after[1], limit + 1),
            ).fetchall()
        return cut_page([_record_from_row(row) for row in rows], limit)

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its history; whether it existed.

        ConversationLocked if another live process has it open.
        """
        return await self._run(self._delete_sync, conversation_id)

    def _delete_sync(self, conversation_id: str) -> bool:
        conn = self._db()
        with write_transaction(conn):
            holder = self._foreign_holder(conn, conversation_id)
            if holder is not None:
                raise ConversationLocked(conversation_id, holder)
            conn.execute("DELETE FROM items WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM leases WHERE conversation_id = ?", (conversation_id,))
            deleted = conn.execute(
                "DELETE FROM conversations WHERE conversation_id = ?", (conversation_id,)
            ).rowcount
        return deleted > 0

    # --- leases -----------------------------------------------------------------

    def watch_leases(self, lost: Callable[[str], None]) -> None:
        """A SQLite lease is taken over only from a process that died: never from this one."""

    async def acquire(self, conversation_id: str) -> None:
        """Take this process's lease on a conversation; ConversationLocked if another has it.

        A lease whose owner process is gone (crashed) is taken over.
        """
        await self._run(self._acquire_sync, conversation_id)

    def _acquire_sync(self, conversation_id: str) -> None:
        conn = self._db()
        with write_transaction(conn):
            self._take_lease(conn, conversation_id)

    def _take_lease(self, conn: sqlite3.Connection, conversation_id: str) -> None:
        """Inside a write transaction: this store's lease row; ConversationLocked if held."""
        holder = self._foreign_holder(conn, conversation_id)
        if holder is not None:
            raise ConversationLocked(conversation_id, holder)
        conn.execute(
            "INSERT OR REPLACE INTO leases "
            "(conversation_id, owner_pid, owner_token, owner_start, boot_id, acquired_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, self._pid, self._token, self._start, _BOOT_ID, utc_now()),
        )

    def _foreign_holder(self, conn: sqlite3.Connection, conversation_id: str) -> str | None:
        """'pid N' when a live owner other than this store holds the lease, else None."""
        row = conn.execute(
            "SELECT owner_pid, owner_token, owner_start, boot_id FROM leases "
            "WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()
        if row is None:
            return None
        pid, token, start, boot_id = row
        if token == self._token:
            return None
        if pid == self._pid and start == self._start and boot_id == _BOOT_ID:
            # Another store in this very process: alive while it is open.
            alive = token in _LIVE_TOKENS
        else:
            alive = _process_alive(pid, start, boot_id)
        if alive:
            return f"pid {pid}"
        log.info("store %s: taking over %s from dead pid %s", self.path, conversation_id, pid)
        return None

    async def release(self, conversation_id: str) -> None:
        """Give up this process's lease on a conversation."""
        await self._run(self._release_sync, conversation_id)

    def _release_sync(self, conversation_id: str) -> None:
        conn = self._db()
        with write_transaction(conn):
            conn.execute(
                "DELETE FROM leases WHERE conversation_id = ? AND owner_token = ?",
                (conversation_id, self._token),
            )

    # --- maintenance ----------------------------------------------------------------

    async def integrity_check(self) -> builtins.list[str]:
        """PRAGMA integrity_check's findings: ["ok"] for a sound database."""
        return await self._run(self._integrity_check_sync, read=True)

    def _integrity_check_sync(self) -> builtins.list[str]:
        conn = self._conn  # not _db(): a corrupt store is what this is run on
        if conn is None:
            raise StoreClosedError(f"store {self.path} is not open")
        try:
            return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        except sqlite3.Error as exc:
            if storage_reason(exc) != "corrupt":
                raise
            return [str(exc)]  # damage bad enough to stop the check is a finding too

    async def schema_version(self) -> int:
        """The schema version of the open store."""
        return await self._run(self._schema_version_sync, read=True)

    def _schema_version_sync(self) -> int:
        row = self._db().execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])
