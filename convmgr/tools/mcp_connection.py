"""One MCP server over stdio, through the official MCP SDK: the only module that imports `mcp`.

convmgr.tools.mcp imports it when the first server starts, so a process with no
MCP server never loads the SDK. What convmgr relies on in the SDK (mcp 2.x,
pinned `>=2.3,<3` in pyproject.toml) and adjusts, each with its reason:

- Stopping a server: stdio_client closes its stdin, waits PROCESS_TERMINATION_TIMEOUT
  (2 s) for it to exit, then SIGTERMs its process group and SIGKILLs it after
  FORCE_KILL_TIMEOUT (2 s): up to 4 s, and convmgr must end its servers within a
  second of SIGTERM. Both are module constants read at each stop, so they are
  set lower here, once, for the process (no other code in it uses the SDK).
- Exit codes: stdio_client keeps its process to itself, and failure messages name
  how a server ended. The spawn function it calls is wrapped so that the
  spawning task finds the process in a context variable; with an SDK that lacks
  that function, messages say the server ended without its code.
- Cancellation: ClientSession.send_request sends `notifications/cancelled` itself
  when the calling task is cancelled (shielded, with a bounded write) and when
  its own timeout runs out; nothing is added here, and
  tests/test_mcp_faults.py checks that it reaches the server.
- errlog is handed to the child as its stderr, so it must be a real file, never
  convmgr's stdout: a pipe whose read end a task turns into log lines.
"""

import logging
import math
import os
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TextIO

import anyio
import mcp.client.stdio as sdk_stdio
import mcp_types as types
from anyio.abc import Process
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

import convmgr
from convmgr.logs import fields
from convmgr.model import McpServerSettings, ToolOutcome
from convmgr.tools.results import MalformedResult, outcome_of_result

logger = logging.getLogger("convmgr.tools.mcp")

# After its stdin closes, how long a server may take to exit before SIGTERM, and
# then before SIGKILL: together well inside convmgr's one-second stop budget.
STOP_GRACE_S = 0.3
KILL_GRACE_S = 0.3
# After a server ended on its own: how long its last stderr lines may take to
# arrive, for the failure message.
_STDERR_DRAIN_S = 0.5
# A call whose connection dropped waits this long for the reason (the exit code).
_END_REASON_WAIT_S = 1.0
_STDERR_LINE_MAX = 64 * 1024
_TAIL_MAX = 200
_CLIENT_INFO = types.Implementation(name="convmgr", version=convmgr.__version__)

_SPAWNED: ContextVar[list[Process] | None] = ContextVar("convmgr_mcp_spawned", default=None)


def _adjust_sdk() -> None:
    """Shorten the SDK's stop waits and record the processes it spawns (see the module doc)."""
    sdk_stdio.PROCESS_TERMINATION_TIMEOUT = STOP_GRACE_S
    sdk_stdio.FORCE_KILL_TIMEOUT = KILL_GRACE_S
    spawn: Callable[..., Coroutine[Any, Any, object]] | None = getattr(
        sdk_stdio, "_create_platform_compatible_process", None
    )
    if spawn is None or getattr(spawn, "_convmgr_records", False):
        return

    async def recording_spawn(*args: Any, **kwargs: Any) -> object:
        process = await spawn(*args, **kwargs)
        sink = _SPAWNED.get()
        if sink is not None and isinstance(process, Process):
            sink.append(process)
        return process

    recording_spawn._convmgr_records = True  # type: ignore[attr-defined]
    sdk_stdio._create_platform_compatible_process = recording_spawn  # type: ignore[assignment]


_adjust_sdk()


class _EndWatch:
    """The transport's read stream, setting an event when it ends (the server closed stdout)."""

    def __init__(self, stream: ReadStream[SessionMessage | Exception], ended: anyio.Event) -> None:
        self._stream = stream
        self._ended = ended

    async def receive(self) -> SessionMessage | Exception:
        """The next message; at the end, the event is set first."""
        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended.set()
            raise

    async def aclose(self) -> None:
        """Close the transport's stream."""
        await self._stream.aclose()

    def __aiter__(self) -> "_EndWatch":
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "_EndWatch":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Connection:
    """One server: started, initialized and listed by run(), then held until stop() or its end."""

    def __init__(self, settings: McpServerSettings, attempt: int = 1) -> None:
        self.settings = settings
        # Which start of this server it is (from 1), for messages.
        self.attempt = attempt
        self.session: ClientSession | None = None
        # The tools the model may use (enabled_tools applied).
        self.tools: list[types.Tool] = []
        # Set once listed, or once it failed to get there.
        self.ready = anyio.Event()
        # Set once over; `failure` then says why (empty when stopped).
        self.ended = anyio.Event()
        self.failure = ""
        self._scope = anyio.CancelScope()
        self._stopping = False
        self._lost = anyio.Event()
        self._stderr_done = anyio.Event()
        # The last line the server wrote on stderr (cut), often why it ended.
        self.stderr_tail = ""

    @property
    def live(self) -> bool:
        """Whether calls can be made: listed, and neither lost nor stopping."""
        return self.session is not None and not self._lost.is_set() and not self._stopping

    def stop(self) -> None:
        """End the server (closing its stdin, then the SDK's terminate), from any task."""
        self._stopping = True
        self._scope.cancel()

    async def run(self) -> None:
        """Start, initialize and list; hold the connection until stopped or lost. Never raises."""
        read_fd, write_fd = os.pipe()
        errlog = os.fdopen(write_fd, "w")
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._log_stderr, read_fd)
                failure = await self._connect(errlog)
                if not self._stopping:
                    # The server ended by itself: its last words explain it.
                    with anyio.move_on_after(_STDERR_DRAIN_S):
                        await self._stderr_done.wait()
                self.failure = failure
                group.cancel_scope.cancel()
            if failure:
                logger.warning(
                    "MCP server failed: %s",
                    failure,
                    extra=fields(
                        server=self.settings.name,
                        attempt=self.attempt,
                        stderr=self.stderr_tail or None,
                    ),
                )
            else:
                logger.debug("MCP server stopped", extra=fields(server=self.settings.name))
        except Exception:  # a bug here must not take the hub's other servers down
            logger.exception("MCP server %s: the connection failed", self.settings.name)
            self.failure = self.failure or "convmgr's MCP client failed (see its log)"
        finally:
            errlog.close()
            os.close(read_fd)
            self.session = None
            self.ready.set()
            self.ended.set()

    async def _connect(self, errlog: TextIO) -> str:
        """Hold one connection; returns why it ended or could not start ("" when stopped)."""
        settings = self.settings
        params = StdioServerParameters(
            command=settings.command, args=list(settings.args), env=dict(settings.env)
        )
        spawned: list[Process] = []
        token = _SPAWNED.set(spawned)
        startup = anyio.CancelScope(deadline=anyio.current_time() + settings.startup_timeout_s)
        step = "start"
        failure = ""
        try:
            with self._scope, startup:
                async with stdio_client(params, errlog=errlog) as (read, write):
                    # The child has its own copy: the pipe's end is the server's end.
                    errlog.close()
                    watched = _EndWatch(read, self._lost)
                    async with ClientSession(watched, write, client_info=_CLIENT_INFO) as session:
                        step = "initialize"
                        await session.initialize()
                        step = "tools/list"
                        tools = await _list_tools(session)
                        startup.deadline = math.inf
                        self.tools = _enabled(tools, settings)
                        self.session = session
                        step = "running"
                        self.ready.set()
                        logger.info(
                            "MCP server started",
                            extra=fields(
                                server=settings.name,
                                command=settings.command,
                                attempt=self.attempt,
                                tools=len(self.tools),
                            ),
                        )
                        await self._lost.wait()
        except Exception as exc:
            failure = _describe(_leaf(exc), settings.command, step)
        finally:
            _SPAWNED.reset(token)
        if self._stopping:
            return ""
        if startup.cancelled_caught:
            return (
                f"timed out after {settings.startup_timeout_s:g} s (start, initialize, tools/list)"
            )
        if failure:
            return failure
        return _ended(spawned[0].returncode if spawned else None, before_ready=step != "running")

    async def _log_stderr(self, fd: int) -> None:
        """Log each line the server writes on stderr; keep the last one for failure messages."""
        os.set_blocking(fd, False)
        pending = b""
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > _STDERR_LINE_MAX:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._stderr_line(line)
            if pending:
                self._stderr_line(pending)
        except OSError as exc:
            logger.warning("MCP server %s: reading its stderr failed: %s", self.settings.name, exc)
        finally:
            self._stderr_done.set()

    def _stderr_line(self, raw: bytes) -> None:
        """One line of the server's stderr, to the log."""
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            logger.info("MCP server %s: %s", self.settings.name, line)
            self.stderr_tail = line[:_TAIL_MAX]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call a tool; every failure (the server's, its death, the timeout) is a failed outcome."""
        session = self.session
        name = self.settings.name
        if session is None or not self.live:
            return ToolOutcome(f"MCP server {name!r} is not running", is_error=True)
        timeout = self.settings.tool_timeout_s
        with anyio.move_on_after(timeout) as timer:
            try:
                result = await session.call_tool(tool, arguments)
            except MCPError as exc:
                if exc.code == types.CONNECTION_CLOSED and (self._lost.is_set() or self._stopping):
                    return await self._ended_during_call()
                return ToolOutcome(
                    f"MCP server {name!r} answered with error {exc.code}: {exc.message}",
                    is_error=True,
                )
            except Exception as exc:  # a result the SDK refused (shape, output schema)
                return ToolOutcome(f"MCP server {name!r} gave an unusable result: {exc}", True)
        if timer.cancelled_caught:
            return ToolOutcome(
                f"the call to MCP server {name!r} timed out after {timeout:g} s", is_error=True
            )
        try:
            return outcome_of_result(
                result.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        except MalformedResult as exc:
            return ToolOutcome(f"MCP server {name!r} gave an unusable result: {exc}", True)

    async def _ended_during_call(self) -> ToolOutcome:
        """The outcome of a call whose connection dropped: why, once known."""
        name = self.settings.name
        if not self._stopping:
            with anyio.move_on_after(_END_REASON_WAIT_S):
                await self.ended.wait()
        if self._stopping:
            return ToolOutcome(f"MCP server {name!r} was stopped during the call", is_error=True)
        reason = self.failure or "it closed its connection"
        if self.stderr_tail:
            reason = f"{reason}; stderr: {self.stderr_tail}"
        return ToolOutcome(f"MCP server {name!r} ended during the call: {reason}", is_error=True)


async def _list_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool the server lists, following nextCursor."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        params = None if cursor is None else types.PaginatedRequestParams(cursor=cursor)
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
        if cursor in seen:
            # Following it again would never end.
            raise RuntimeError(f"the server repeated the cursor {cursor!r}")
        seen.add(cursor)


def _enabled(tools: list[types.Tool], settings: McpServerSettings) -> list[types.Tool]:
    """The tools enabled_tools allows (all when it is not set)."""
    if settings.enabled_tools is None:
        return tools
    allowed = set(settings.enabled_tools)
    missing = allowed - {tool.name for tool in tools}
    if missing:
        logger.warning(
            "MCP server %s: enabled_tools names tools it does not offer: %s",
            settings.name,
            ", ".join(sorted(missing)),
        )
    return [tool for tool in tools if tool.name in allowed]


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside task groups' exception groups (the one that says what happened)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException, command: str, step: str) -> str:
    """Why a server could not start, in one line."""
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {command}"
    if isinstance(exc, PermissionError):
        return f"cannot run {command}: permission denied"
    if isinstance(exc, MCPError):
        if exc.code == types.CONNECTION_CLOSED:
            return ""  # it ended: the exit code says more
        return f"{step} failed: error {exc.code}: {exc.message}"
    if isinstance(exc, OSError) and step == "start":
        return f"cannot start {command}: {exc.strerror or exc}"
    return f"{step} failed: {exc}"


def _ended(returncode: int | None, *, before_ready: bool) -> str:
    """How a server's process ended, as a message."""
    when = " before it was ready" if before_ready else ""
    if returncode is None:
        return f"closed its connection{when}"
    if returncode < 0:
        return f"was killed by signal {-returncode}{when}"
    return f"exited with code {returncode}{when}"
