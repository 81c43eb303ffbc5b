"""The server's side of the commit process (see commit_process): send turns, await answers.

Why a process: SQLite releases the GIL while it works, but the store's thread
still needs the GIL between statements, and each hand-over with a busy event
loop costs both threads; measured, that made a stored turn ~40 % dearer than a
memory-only one. A child process shares no GIL: the loop pays one pipe write
per batch of turns and one read per answer.

Only on asyncio event loops with add_reader (not Windows' proactor loop, not
trio); elsewhere, or when the child cannot start, the store commits on its
thread as before. Turns that end in one pass of the loop go as one frame, which
the child commits in one transaction.
"""

import asyncio
import errno
import logging
import marshal
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from convmgr.model import Item, StorageFailed
from convmgr.store.commit_process import HEADER

# One turn as sent: conversation id, summary values (sqlite_rows._summary), items.
Turn = tuple[str, tuple[Any, ...], list[Item]]

log = logging.getLogger(__name__)

# How long close() waits for the child to answer what it was sent and exit.
CLOSE_TIMEOUT_S: Final = 60.0

# The child imports convmgr from wherever this process did.
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
_BOOT: Final = (
    "import sys\n"
    f"if {_PACKAGE_ROOT!r} not in sys.path: sys.path.insert(0, {_PACKAGE_ROOT!r})\n"
    "from convmgr.store.commit_process import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class CommitProcessUnavailable(Exception):
    """The commit process did not take this turn (not running): commit it another way."""


class CommitError(RuntimeError):
    """The commit process could not commit a turn; the message says why."""


class _Commit:
    """One turn waiting for its answer."""

    __slots__ = ("delivered", "error", "turn", "waiter")

    def __init__(self, turn: Turn, waiter: "asyncio.Future[None]") -> None:
        self.turn = turn
        self.waiter = waiter
        self.error: BaseException | None = None
        self.delivered = False


class CommitProcess:
    """A running commit process and the turns on their way to it."""

    def __init__(self, proc: "subprocess.Popen[bytes]", loop: asyncio.AbstractEventLoop) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._loop = loop
        self._out_fd = proc.stdin.fileno()
        self._in_fd = proc.stdout.fileno()
        self._ready = False
        self._gone = False
        self._closing = False
        self._pending: list[_Commit] = []  # not sent yet
        self._in_flight: deque[list[_Commit]] = deque()  # sent, in order, one list per frame
        self._out = bytearray()  # frames not yet written to the pipe
        self._in = bytearray()  # answer bytes not yet parsed
        self._writing = False  # waiting for the pipe to take more
        self._exited: asyncio.Future[None] = loop.create_future()
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        loop.add_reader(self._in_fd, self._on_readable)

    @classmethod
    def start(cls, path: Path) -> "CommitProcess | None":
        """Spawn the commit process for a store file; None where it cannot run."""
        if sys.platform == "win32" or not sys.executable:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # not asyncio (trio)
        try:
            proc = subprocess.Popen(
                # -I: neither the working directory nor PYTHON* variables
                # decide what the child imports; _BOOT adds convmgr's root.
                [sys.executable, "-I", "-c", _BOOT, str(path), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Out of the terminal's process group: Ctrl-C is for the server,
                # which then closes the child's input.
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("cannot start the commit process (%s); committing on a thread", exc)
            return None
        try:
            return cls(proc, loop)
        except (NotImplementedError, OSError) as exc:  # a loop without add_reader
            log.warning("cannot watch the commit process (%s); committing on a thread", exc)
            proc.kill()
            proc.wait()
            return None

    @property
    def usable(self) -> bool:
        """Whether commit() may take turns."""
        return not self._gone and not self._closing

    async def commit(self, turn: Turn) -> None:
        """Commit one turn; CommitProcessUnavailable if it never reached the child.

        Once sent the turn is committed or not by the child whatever happens
        here: a cancelled caller waits for the answer before the cancellation
        goes on, so it never mistakes a committed turn for an abandoned one.
        """
        if not self.usable:
            raise CommitProcessUnavailable
        job = _Commit(turn, self._loop.create_future())
        self._pending.append(job)
        if len(self._pending) == 1 and self._ready:
            self._loop.call_soon(self._flush)
        try:
            await job.waiter
        except asyncio.CancelledError:
            if not job.delivered:
                job.waiter = self._loop.create_future()
                with anyio.CancelScope(shield=True):
                    await job.waiter
            raise
        if job.error is not None:
            raise job.error

    async def aclose(self) -> None:
        """Let the child answer everything sent, end its input, wait for it to exit."""
        if self._closing:
            return
        self._closing = True
        if self._ready and not self._gone:
            self._flush()
        elif not self._gone:
            # Still starting: whatever waits goes to the store's thread instead.
            self._fail_pending()
        self._write()  # closes the pipe once the frames are out
        with anyio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            await asyncio.shield(self._exited)
        if scope.cancelled_caught:
            log.error("the commit process did not exit in %.0f s; killing it", CLOSE_TIMEOUT_S)
            self._proc.kill()
            self._on_exit()
        await anyio.to_thread.run_sync(self._proc.wait)
        assert self._proc.stdout is not None
        self._proc.stdout.close()

    # --- on the event loop -------------------------------------------------------------

    def _flush(self) -> None:
        """Send the pending turns as one frame."""
        pending = self._pending
        if not pending or self._gone or not self._ready:
            return
        self._pending = []
        try:
            body = marshal.dumps([job.turn for job in pending])
        except ValueError:
            # Something marshal cannot carry (and JSON could not either, but
            # the thread says so the usual way): those turns go there.
            for job in pending:
                job.error = CommitProcessUnavailable()
                _deliver(job)
            return
        self._out += HEADER.pack(len(body))
        self._out += body
        self._in_flight.append(pending)
        self._write()

    def _write(self) -> None:
        out = self._out
        while out:
            try:
                written = os.write(self._out_fd, out)
            except BlockingIOError:
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self._out_fd, self._on_writable)
                return
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EBADF):
                    log.error("cannot write to the commit process: %s", exc)
                out.clear()  # the child is gone; its end of input shows that
                break
            del out[:written]
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._out_fd)
        if self._closing and not self._gone:
            self._close_input()

    def _on_writable(self) -> None:
        self._write()

    def _close_input(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            stdin.close()

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._in_fd, 1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            log.error("cannot read from the commit process: %s", exc)
            chunk = b""
        if not chunk:
            self._on_exit()
            return
        data = self._in
        data += chunk
        start = 0
        while len(data) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(data, start)
            end = start + HEADER.size + size
            if len(data) < end:
                break
            try:
                self._on_frame(marshal.loads(data[start + HEADER.size : end]))
            except (ValueError, EOFError, TypeError, IndexError) as exc:
                # Not what the child writes: stop trusting it (its turns fail).
                log.error("bad answer from the commit process (%s); stopping it", exc)
                self._proc.kill()
                self._on_exit()
                return
            start = end
        del data[:start]

    def _on_frame(self, message: Any) -> None:
        if not self._ready:
            self._ready = True  # ("ready", pid)
            self._flush()
            return
        jobs = self._in_flight.popleft()
        for job, error in zip(jobs, message, strict=True):
            if isinstance(error, tuple):
                reason, detail = error
                job.error = StorageFailed(reason, detail)
            elif error is not None:
                job.error = CommitError(error)
            _deliver(job)

    def _on_exit(self) -> None:
        """The child closed its output: it exited (or is about to)."""
        if self._gone:
            return
        self._gone = True
        self._loop.remove_reader(self._in_fd)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._out_fd)
        self._close_input()
        if not self._closing or self._in_flight:
            log.error("the commit process exited unexpectedly; committing on a thread from now on")
        while self._in_flight:
            for job in self._in_flight.popleft():
                job.error = CommitError("the commit process exited before answering")
                _deliver(job)
        self._fail_pending()
        if not self._exited.done():
            self._exited.set_result(None)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, []
        for job in pending:
            job.error = CommitProcessUnavailable()
            _deliver(job)


def _deliver(job: _Commit) -> None:
    job.delivered = True
    if not job.waiter.done():
        job.waiter.set_result(None)
