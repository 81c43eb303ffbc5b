"""The database thread: one thread that runs a store's jobs in order.

Jobs that queue up while the thread is busy may be handed over together (a
batch), so that one transaction can hold many of them. A job given an
`interrupt` function (a read) is abandoned by a cancelled caller: dropped if
it has not started, interrupted if it is running.
"""

import asyncio
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread

T = TypeVar("T")

# An interruptible job's state; the others never leave _QUEUED.
_QUEUED, _RUNNING, _DONE, _DROPPED = range(4)


class _Job:
    """One call to run on the database thread, and where its outcome goes.

    The thread sets the outcome (set_result / set_exception) and then wakes the
    caller: an asyncio caller through its loop, any other through `event`. Plain
    slots rather than a concurrent.futures.Future: no lock and condition per job.
    """

    __slots__ = (
        "args",
        "batchable",
        "delivered",
        "error",
        "event",
        "func",
        "interrupt",
        "interrupted",
        "loop",
        "result",
        "state",
        "waiter",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        batchable: bool,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        self.func = func
        self.args = args
        self.batchable = batchable
        # Stops the job's running statement (thread-safe); None: runs to the end.
        self.interrupt = interrupt
        self.state = _QUEUED  # guarded by _DbThread._lock (interruptible jobs only)
        self.interrupted = False
        self.result: Any = None
        self.error: BaseException | None = None
        # The asyncio caller's loop and the future it awaits; the thread wakes
        # the loop once per batch (not once per job) to pass the outcomes on.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiter: asyncio.Future[Any] | None = None
        # Set on the loop by _deliver: the outcome is in (the waiter may be a
        # cancelled one, see _DbThread.call).
        self.delivered = False
        # Set by the thread when the caller is not on asyncio (trio).
        self.event: threading.Event | None = None

    def set_result(self, result: Any) -> None:
        self.result = result

    def set_exception(self, error: BaseException) -> None:
        self.error = error

    def outcome(self) -> Any:
        """The result, or raise the error (once the thread is done with the job)."""
        if self.error is not None:
            raise self.error
        return self.result


class _DbThread:
    """A thread that runs jobs one at a time, in the order they were submitted.

    A batchable job's func takes a list of jobs and settles each of them
    (set_result / set_exception); consecutive batchable jobs of one func that
    are queued when the thread gets to the first are handed to it together.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | list[_Job] | None] = queue.SimpleQueue()
        # Batchable jobs of the current loop pass, not yet handed over (see call).
        # A store is used from one event loop at a time, so no lock.
        self._pending: list[_Job] = []
        # Guards the state of interruptible jobs, so that an interrupt reaches
        # the job it is meant for and never the one after it (a write).
        self._lock = threading.Lock()
        # Interruptible jobs abandoned by their callers: stopped by an interrupt
        # while running, and dropped before they started.
        self.interrupted = 0
        self.dropped = 0
        # A daemon: a process that exits without close() must not hang on it;
        # WAL makes an interrupted transaction vanish as if never begun.
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def call(
        self,
        func: Callable[..., T],
        *args: Any,
        batchable: bool = False,
        interrupt: Callable[[], None] | None = None,
    ) -> T:
        """Run func(*args) on the thread and return its result (or raise its error).

        With batchable, func([job, ...]) runs instead, for this job and its
        neighbours (see the class); the job's args are in job.args. With
        interrupt (read-only jobs only), a cancelled caller abandons the job.
        """
        job = _Job(func, args, batchable, interrupt)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        # Once queued a job without `interrupt` runs to the end; the caller
        # waits for it even when cancelled, so it never mistakes a committed
        # write for an abandoned one.
        if loop is None:
            # Not asyncio (trio): block a helper thread on the event instead.
            job.event = threading.Event()
            self._flush()
            self._queue.put(job)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(job.event.wait)
            return cast(T, job.outcome())
        job.loop = loop
        job.waiter = waiter = loop.create_future()
        if batchable:
            # Held until the loop has run what is ready now: the turns that end
            # in one pass of the loop reach the thread as one batch, for one
            # hand-over (a thread wake-up) instead of one each.
            pending = self._pending
            pending.append(job)
            if len(pending) == 1:
                loop.call_soon(self._flush)
        else:
            self._flush()
            self._queue.put(job)
        # Waiting is shielded only once a cancellation arrives: an anyio
        # CancelScope costs more than the rest of the call. A cancellation
        # cancels the waiter, so the rest of the wait is on a fresh one, which
        # _deliver resolves, and only then is the cancellation let through.
        try:
            await waiter
        except asyncio.CancelledError:
            if interrupt is not None:
                # A read: nothing to wait for, its outcome is of no use now.
                self.abandon(job)
                raise
            if not job.delivered:
                job.waiter = waiter = loop.create_future()
                with anyio.CancelScope(shield=True):
                    await waiter
            raise
        result = job.outcome()
        return cast(T, result)

    def post(
        self, func: Callable[..., Any], *args: Any, interrupt: Callable[[], None] | None = None
    ) -> _Job:
        """Queue func(*args) with nobody waiting for it; the job, for abandon()."""
        job = _Job(func, args, False, interrupt)
        self._flush()
        self._queue.put(job)
        return job

    def abandon(self, job: _Job) -> None:
        """Drop an interruptible job that has not started, or interrupt it if running."""
        if job.interrupt is None:
            raise ValueError("only a job given an interrupt function can be abandoned")
        with self._lock:
            if job.state == _QUEUED:
                job.state = _DROPPED
                self.dropped += 1
            elif job.state == _RUNNING and not job.interrupted:
                job.interrupted = True
                # Under the lock: the thread cannot have moved on to the next job.
                job.interrupt()

    def stop(self) -> None:
        """End the thread after the jobs already queued."""
        self._flush()
        self._queue.put(None)

    def _flush(self) -> None:
        """Hand the pending batchable jobs to the thread, as one queue entry."""
        pending = self._pending
        if pending:
            self._pending = []
            self._queue.put(pending)

    def _main(self) -> None:
        held: deque[_Job | list[_Job] | None] = deque()
        while True:
            entry = held.popleft() if held else self._queue.get()
            if entry is None:
                return
            if isinstance(entry, list):
                batch = entry
            elif entry.batchable:
                batch = [entry]
            elif entry.interrupt is not None:
                if self._run_interruptible(entry):
                    _wake([entry])
                continue
            else:
                _run_job(entry)
                _wake([entry])
                continue
            # ==, not is: a store's func is a bound method, a new object each
            # time it is named, so `is` never merged two queue entries.
            func = batch[0].func
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, list) and more[0].func == func:
                    batch.extend(more)
                elif isinstance(more, _Job) and more.batchable and more.func == func:
                    batch.append(more)
                else:
                    held.append(more)  # runs next: order is kept
                    break
            _run_batch(batch)
            _wake(batch)

    def _run_interruptible(self, job: _Job) -> bool:
        """Run an interruptible job unless it was dropped; whether it ran."""
        with self._lock:
            if job.state == _DROPPED:
                return False
            job.state = _RUNNING
        _run_job(job)
        with self._lock:
            job.state = _DONE
            # SQLite ends an interrupted statement with SQLITE_INTERRUPT.
            code = getattr(job.error, "sqlite_errorcode", None)
            if job.interrupted and code == sqlite3.SQLITE_INTERRUPT:
                self.interrupted += 1
        return True


def _wake(jobs: list[_Job]) -> None:
    """Hand the outcomes of finished jobs to their callers: one wake-up per asyncio loop."""
    first = jobs[0].loop
    if first is not None and all(job.loop is first for job in jobs):
        by_loop = {first: jobs}  # the usual case: one loop
    else:
        by_loop = {}
        for job in jobs:
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
            elif job.event is not None:
                job.event.set()
    for loop, waiting in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, waiting)


def _deliver(jobs: list[_Job]) -> None:
    """On the loop: resolve each job's waiter from its outcome."""
    for job in jobs:
        job.delivered = True
        waiter = job.waiter
        if waiter is None or waiter.done():
            continue
        error = job.error
        if error is None:
            waiter.set_result(job.result)
        else:
            waiter.set_exception(error)


def _run_batch(jobs: list[_Job]) -> None:
    try:
        jobs[0].func(jobs)
    except BaseException as exc:
        # The function settles each job; one that raises instead fails them
        # all, rather than let its callers take a None result for success.
        for job in jobs:
            job.error = exc


def _run_job(job: _Job) -> None:
    try:
        result = job.func(*job.args)
    except BaseException as exc:
        job.error = exc
    else:
        job.result = result
