"""`convmgr serve`: the process around a session; the session itself over any byte stream.

`serve` wires a connection on a ByteStream to the manager and the convmgr
dialect's method table, and runs the session to its end. `serve_stdio` is the
process: stdin/stdout kept for the protocol alone, signals, the store and
providers the flags ask for, the event loop.
"""

import argparse
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import TaskGroup

from convmgr import logs
from convmgr.core.client import ClientChannel
from convmgr.core.events import EventSink
from convmgr.core.manager import ConversationManager
from convmgr.core.tools import DEFAULT_MAX_TOOL_ROUNDS, Toolbox, ToolLimits
from convmgr.dialects.convmgr.front import ConvmgrFront
from convmgr.jsonrpc.connection import Connection
from convmgr.jsonrpc.framing import Framing
from convmgr.jsonrpc.stdio import StdioStream
from convmgr.jsonrpc.transport import ByteStream
from convmgr.logs import fields
from convmgr.model import McpServerSettings
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.base import ConversationStore

if TYPE_CHECKING:
    from convmgr.providers.config import StoreSettings
from convmgr.tools.mcp import McpHub

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 << 20


class StartupError(Exception):
    """The server cannot start: a one-line reason for stderr (exit status 2)."""


@dataclass(slots=True)
class ServeOptions:
    """How a session ends: what `convmgr serve` was asked for."""

    drain_timeout: float = 60.0
    signal_flush_timeout: float = 0.5


@contextmanager
def protected_stdio() -> Iterator[tuple[int, int]]:
    """The protocol's own copies of stdin and stdout, non-blocking; fds 0 and 1 point elsewhere.

    fd 1 (and sys.stdout) go to stderr, so a stray print() or a library writing
    to fd 1 cannot corrupt the protocol stream; fd 0 reads /dev/null, so nothing
    that reads stdin (or a child process that inherits it) can take protocol
    bytes. The copies are not inherited by children. fd 0 is restored on exit;
    fd 1 is not, so that closing our copy ends the client's input.
    """
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    in_fd = os.dup(0)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
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
        os.dup2(in_fd, 0)
        os.close(in_fd)
        os.close(out_fd)


def open_store(
    args: argparse.Namespace, settings: "StoreSettings | None" = None
) -> ConversationStore:
    """The store the flags, $CONVMGR_STORE and `[store]` ask for (SQLite by default)."""
    if args.no_store:
        from convmgr.store.memory import MemoryStore

        return MemoryStore()
    from convmgr.store.location import make_store, store_target

    target = store_target(args.store, None if settings is None else settings.url)
    return make_store(target, lease_ttl_s=30.0 if settings is None else settings.lease_ttl_s)


@dataclass(slots=True)
class Configuration:
    """What the configuration file gives a session: providers, MCP servers, tool limits."""

    providers: ProviderRegistry
    mcp_servers: dict[str, McpServerSettings] = field(default_factory=dict)
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    store: "StoreSettings | None" = None


def load_configuration(
    config_file: Path | None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Configuration:
    """The configuration file's providers and tools (echo only when there is none)."""
    from convmgr.providers.config import (
        ConfigError,
        config_path,
        load_config,
        registry_from_config,
    )

    path, _ = config_path(config_file)
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    if config is None:
        log.info("no configuration file: the echo provider only", extra=fields(config=str(path)))
        return Configuration(ProviderRegistry.echo_only())
    logs.watch_secret_envs(
        entry.settings.api_key_env
        for entry in config.providers.values()
        if entry.settings.api_key_env
    )
    log.info(
        "configuration read",
        extra=fields(
            config=str(path),
            providers=["echo", *config.providers],
            default_provider=config.default_provider,
            mcp_servers=list(config.mcp_servers),
        ),
    )
    providers = registry_from_config(config, max_event_bytes=max_message_bytes)
    return Configuration(providers, dict(config.mcp_servers), config.max_tool_rounds, config.store)


async def open_configured_store(
    args: argparse.Namespace, settings: "StoreSettings | None" = None
) -> ConversationStore:
    """The store the flags ask for, open; StartupError (one line) when it cannot be used."""
    store = open_store(args, settings)
    try:
        await store.open()
    except Exception as exc:
        from convmgr.store.errors import StoreOpenError

        if isinstance(exc, StoreOpenError):
            raise StartupError(str(exc)) from None
        raise
    if args.no_store:
        log.info("no store (--no-store): conversations are kept in memory only")
    else:
        from convmgr.store.location import describe, schema_version_for, store_target

        target = store_target(args.store, None if settings is None else settings.url)
        log.info(
            "store open",
            extra=fields(store=describe(target), schema_version=schema_version_for(target)),
        )
    return store


class SessionServer(Protocol):
    """A dialect's method table, as the session around it sees it."""

    shut_down: bool  # set when the session stops: later requests are refused
    exit_requested: anyio.Event  # the dialect's way of ending the session, if it has one


class FrontServer(SessionServer, Protocol):
    """A Front's method table: a SessionServer that also warms up after the first answer."""

    async def warm_up(self) -> None:
        """Build, after the first answer, what later requests will need."""
        ...


class Front(Protocol):
    """A dialect's parts around the manager, for one connection."""

    @property
    def client(self) -> ClientChannel:
        """How the core reaches the client."""
        ...

    @property
    def sink(self) -> EventSink:
        """Where the core's events go."""
        ...

    def bind(
        self, manager: ConversationManager, providers: ProviderRegistry, store: ConversationStore
    ) -> FrontServer:
        """The dialect's method table over the manager (registered on the connection)."""
        ...


class FrontFactory(Protocol):
    """A dialect: what its connection needs, and its parts (ConvmgrFront, AcpFront)."""

    too_large_code: int
    cancel_form: tuple[str, str]
    own_mcp_servers: bool

    def __call__(self, conn: Connection) -> Front:
        """The dialect's parts on this connection."""
        ...


class Session:
    """How a session ends (docs/protocol.md §2): the first reason to stop wins.

    End of input drains: requests already read are answered and running turns
    may finish, for up to drain_timeout. `exit`, a signal or a client that
    stopped reading abort at once. Either way the store is flushed last.
    """

    def __init__(
        self,
        conn: Connection,
        manager: ConversationManager,
        server: SessionServer,
        store: ConversationStore,
        options: ServeOptions,
    ) -> None:
        self.conn = conn
        self.manager = manager
        self.server = server
        self.store = store
        self.options = options
        self.stop = anyio.Event()
        self.stop_reason = ""
        self._drain_scope: anyio.CancelScope | None = None
        self._reader_scope = anyio.CancelScope()

    def request_stop(self, reason: str) -> None:
        """Begin ending the session; the first reason wins, a signal cuts a drain short."""
        if reason == "signal" and self._drain_scope is not None:
            self._drain_scope.cancel()
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    async def read_until_eof(self, task_group: TaskGroup) -> None:
        """Read requests until end of input (or until stopped for another reason)."""
        with self._reader_scope:
            await self.conn.read_loop(task_group)
            self.request_stop("eof")

    async def watch_exit(self) -> None:
        """The `exit` notification ends the session."""
        await self.server.exit_requested.wait()
        self.request_stop("exit")

    async def watch_output(self) -> None:
        """A client that closed our output can read nothing more: stop as on a signal."""
        await self.conn.outbound.gone.wait()
        log.info("stdout is closed; stopping")
        self.request_stop("output closed")

    async def watch_signals(self) -> None:
        """SIGTERM and SIGINT end the process promptly."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received signal %d; stopping", signum)
                self.request_stop("signal")

    async def finish(self) -> None:
        """End the session for `stop_reason`: drain on EOF, abort otherwise, then flush."""
        conn = self.conn
        log.info("session ending", extra=fields(reason=self.stop_reason))
        self._reader_scope.cancel()
        if self.stop_reason == "eof":
            with anyio.move_on_after(self.options.drain_timeout) as scope:
                self._drain_scope = scope
                await conn.wait_idle()
                await self.manager.drain()
            self._drain_scope = None
        conn.cancel_all()
        with anyio.move_on_after(1):
            await conn.wait_idle()
        self.server.shut_down = True
        with anyio.CancelScope(shield=True):
            await self.manager.close_all("shutdown")
            await self.store.close()
        flush_timeout = (
            self.options.signal_flush_timeout
            if self.stop_reason == "signal"
            else self.options.drain_timeout
        )
        with anyio.move_on_after(flush_timeout):
            await conn.outbound.flush()


async def serve(
    stream: ByteStream,
    store: ConversationStore,
    providers: ProviderRegistry,
    *,
    framing: Framing | None = None,
    max_message_bytes: int = 16 << 20,
    max_conversations: int | None = None,
    options: ServeOptions | None = None,
    signals: bool = False,
    hub: McpHub | None = None,
    tool_limits: ToolLimits | None = None,
    front: FrontFactory = ConvmgrFront,
) -> None:
    """One session over `stream` on an open store, to its end (end of input, exit, a signal).

    `front` is the dialect spoken (the convmgr protocol unless told otherwise).
    """
    conn = Connection(
        stream,
        framing=framing,
        max_message_bytes=max_message_bytes,
        too_large_code=front.too_large_code,
        cancel_form=front.cancel_form,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.outbound.run)
        parts = front(conn)
        async with ConversationManager(
            store,
            providers,
            parts.sink,
            max_conversations=max_conversations,
            toolbox=Toolbox(parts.client, hub, tool_limits),
        ) as manager:
            server = parts.bind(manager, providers, store)
            session = Session(conn, manager, server, store, options or ServeOptions())
            if signals:
                tg.start_soon(session.watch_signals)
            tg.start_soon(session.watch_exit)
            tg.start_soon(session.watch_output)
            tg.start_soon(server.warm_up)
            tg.start_soon(session.read_until_eof, tg)
            await session.stop.wait()
            await session.finish()
        tg.cancel_scope.cancel()


def front_of(args: argparse.Namespace) -> FrontFactory:
    """The dialect the command speaks: `convmgr acp` speaks ACP, anything else convmgr's."""
    if getattr(args, "command", None) == "acp":
        from convmgr.dialects.acp.front import AcpFront

        return AcpFront
    return ConvmgrFront


# A session over a byte stream: `serve`, or another dialect's (convmgr.mcp_app.serve_mcp).
ServeSession = Callable[..., Awaitable[None]]


async def run_server(
    args: argparse.Namespace, in_fd: int, out_fd: int, serve_session: ServeSession = serve
) -> None:
    """The whole life of a stdio session (`serve_session` takes `serve`'s arguments)."""
    front = front_of(args)
    # `serve` speaks the dialect `front` gives; another session function is its own dialect.
    dialect = {"front": front} if serve_session is serve else {}
    configuration = load_configuration(args.config, args.max_message_bytes)
    providers = configuration.providers
    store = await open_configured_store(args, configuration.store)
    # The servers start on first need; leaving the hub ends them (within a second).
    wants_hub = configuration.mcp_servers or (dialect and front.own_mcp_servers)
    hub = McpHub(configuration.mcp_servers) if wants_hub else None
    limits = ToolLimits(args.tool_timeout, configuration.max_tool_rounds)
    try:
        async with AsyncExitStack() as stack:
            if hub is not None:
                await stack.enter_async_context(hub)
            await serve_session(
                StdioStream(in_fd, out_fd),
                store,
                providers,
                framing=None if args.framing == "auto" else args.framing,
                max_message_bytes=args.max_message_bytes,
                max_conversations=args.max_conversations,
                options=ServeOptions(drain_timeout=args.drain_timeout),
                signals=True,
                hub=hub,
                tool_limits=limits,
                **dialect,
            )
    finally:
        with anyio.CancelScope(shield=True):
            await providers.aclose()


_TERMINAL_HINT = (
    "convmgr: serving JSON-RPC on stdin/stdout, one request per line, e.g.\n"
    '  {"id":1,"method":"newConversation","params":{"conversationId":"demo"}}\n'
    "Ctrl-D ends the session; `convmgr --help` says more.\n"
)


def serve_stdio(
    args: argparse.Namespace, serve_session: ServeSession = serve, hint: str = _TERMINAL_HINT
) -> int:
    """Run the server on this process's stdin/stdout; the exit status."""
    # uvloop halves the event loop's cost per wake-up: with 100 HTTP streams
    # at once, the loop's p99 latency went from 10-24 ms to 3-4 ms here. It is
    # a dependency on every platform convmgr runs on (POSIX).
    backend_options = {"use_uvloop": True}
    if os.isatty(0):
        # Someone typed `convmgr` at a prompt: say what it waits for.
        sys.stderr.write(hint)
    try:
        with protected_stdio() as (in_fd, out_fd):
            anyio.run(
                run_server, args, in_fd, out_fd, serve_session, backend_options=backend_options
            )
    except StartupError as exc:
        sys.stderr.write(f"convmgr: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
