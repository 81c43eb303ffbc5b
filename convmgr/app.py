"""`convmgr serve`: wire the store, the providers, the manager and the stdio connection."""

import argparse
import fcntl
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import anyio

from convmgr.core.manager import ConversationManager
from convmgr.dialects.convmgr.errors import ConvmgrCode
from convmgr.dialects.convmgr.handlers import ServeOptions, Server
from convmgr.dialects.convmgr.notifications import EventWriter
from convmgr.jsonrpc.connection import Connection
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start: a one-line reason for stderr (exit status 2)."""


@contextmanager
def protected_stdio() -> Iterator[tuple[int, int]]:
    """The protocol's own stdin/stdout fds, non-blocking; fd 1 and sys.stdout go to stderr.

    A stray print() or a library writing to fd 1 lands on stderr and cannot
    corrupt the protocol stream.
    """
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    in_fd = 0
    saved = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (in_fd, out_fd)}
    for fd, flags in saved.items():
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        yield in_fd, out_fd
    finally:
        # The descriptions may be shared with the parent shell: leave them as found.
        for fd, flags in saved.items():
            with suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        os.close(out_fd)


def open_store(args: argparse.Namespace) -> ConversationStore:
    """The store the flags ask for (SQLite by default)."""
    if args.no_store:
        from convmgr.store.memory import MemoryStore

        return MemoryStore()
    from convmgr.store.paths import default_store_path
    from convmgr.store.sqlite import SqliteStore

    return SqliteStore(args.store or default_store_path(), commit_process=True)


def load_providers(args: argparse.Namespace) -> ProviderRegistry:
    """The providers of the configuration file (echo only when there is none)."""
    from convmgr.providers.config import ConfigError, load_registry

    try:
        return load_registry(args.config, max_event_bytes=args.max_message_bytes)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None


async def run_server(args: argparse.Namespace, in_fd: int, out_fd: int) -> None:
    """The whole life of a stdio session."""
    providers = load_providers(args)
    store = open_store(args)
    try:
        await store.open()
    except Exception as exc:
        from convmgr.store.sqlite import StoreOpenError

        if isinstance(exc, StoreOpenError):
            raise StartupError(str(exc)) from None
        raise
    framing = None if args.framing == "auto" else args.framing
    conn = Connection(
        in_fd,
        out_fd,
        framing=framing,
        max_message_bytes=args.max_message_bytes,
        too_large_code=ConvmgrCode.OVERLOADED,
    )
    options = ServeOptions(drain_timeout=args.drain_timeout)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.outbound.run)
            async with ConversationManager(
                store,
                providers,
                EventWriter(conn.outbound),
                max_conversations=args.max_conversations,
            ) as manager:
                server = Server(conn, manager, providers, store, options)
                tg.start_soon(server.watch_signals)
                tg.start_soon(server.watch_output)
                tg.start_soon(server.warm_up)
                tg.start_soon(server.read_until_eof, tg)
                await server.stop.wait()
                await server.finish()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await providers.aclose()


def _use_uvloop() -> bool:
    """Whether uvloop is there (a dependency wherever it builds: not on Windows)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


_TERMINAL_HINT = (
    "convmgr: serving JSON-RPC on stdin/stdout, one request per line, e.g.\n"
    '  {"id":1,"method":"newConversation","params":{"conversationId":"demo"}}\n'
    "Ctrl-D ends the session; `convmgr --help` says more.\n"
)


def serve_stdio(args: argparse.Namespace) -> int:
    """Run the server on this process's stdin/stdout; the exit status."""
    # uvloop halves the event loop's cost per wake-up: with 100 HTTP streams
    # at once, the loop's p99 latency went from 10-24 ms to 3-4 ms here.
    backend_options = {"use_uvloop": _use_uvloop()}
    if os.isatty(0):
        # Someone typed `convmgr` at a prompt: say what it waits for.
        sys.stderr.write(_TERMINAL_HINT)
    try:
        with protected_stdio() as (in_fd, out_fd):
            anyio.run(run_server, args, in_fd, out_fd, backend_options=backend_options)
    except StartupError as exc:
        sys.stderr.write(f"convmgr: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
