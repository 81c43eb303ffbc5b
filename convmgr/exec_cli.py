"""`convmgr exec`: one turn from the command line, the reply streamed to stdout.

It runs on the same ConversationManager, store and providers as the server,
with no JSON-RPC in between: the manager's events go to `PrintSink`, which
writes the reply as text (or every event as the params of a
`conversation/event` notification, one JSON line each). Nobody can answer
client tools or approval requests here: calls to them fail, as they do for a
server whose client has gone.
"""

import argparse
import json
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import TextIO

import anyio

from convmgr.app import StartupError, load_configuration, open_configured_store
from convmgr.core.client import NoClient
from convmgr.core.events import (
    TERMINAL,
    AgentMessage,
    AgentMessageDelta,
    Event,
    StreamError,
    ToolCall,
    ToolResult,
    ToolSourceFailed,
    TurnAborted,
    TurnFailed,
)
from convmgr.core.manager import ConversationManager
from convmgr.core.tools import Toolbox, ToolLimits, mcp_servers_of
from convmgr.dialects.convmgr.notifications import event_params
from convmgr.model import (
    ConversationError,
    ConversationExists,
    ConversationNotFound,
    ConversationRecord,
    ConversationSettings,
    InvalidArgument,
    TurnSettings,
)
from convmgr.tools.mcp import McpHub

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad usage: one line on stderr, exit status 2."""


class PrintSink:
    """The manager's event sink for exec: the reply as text, or every event as a JSON line."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.err = err
        self.as_json = as_json
        # The turn's terminal event once it came, and the event that says so.
        self.terminal: Event | None = None
        self.ended = anyio.Event()
        # Set when stdout is gone (a closed pipe): the turn is not worth finishing.
        self.gone = anyio.Event()
        self._open_line = False
        self._tool_names: dict[str, str] = {}

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: Event) -> None:
        """Write one event: as a JSON line, or what of it a reader of the text wants."""
        if self.as_json:
            params = event_params(conversation_id, seq, turn_id, event)
            self._write(json.dumps(params, ensure_ascii=False) + "\n")
        else:
            self._text(event)
        if isinstance(event, TERMINAL):
            self.terminal = event
            self.ended.set()

    def _text(self, event: Event) -> None:
        """The reply's text on stdout; retries and tool calls on stderr."""
        if type(event) is AgentMessageDelta:
            if event.delta:
                self._write(event.delta)
                self._open_line = not event.delta.endswith("\n")
        elif isinstance(event, AgentMessage):
            # Each model call's text ends a line (a tool round's text, then the reply's).
            self._end_line()
        elif isinstance(event, StreamError):
            self._end_line()
            self._note(
                f"{event.message}; retry {event.attempt} in {event.retry_in_ms} ms "
                "(the reply starts over)"
            )
        elif isinstance(event, ToolCall):
            self._end_line()
            self._tool_names[event.call_id] = event.name
            self._note(f"tool call: {event.name}")
        elif isinstance(event, ToolResult) and event.is_error:
            name = self._tool_names.get(event.call_id, event.call_id)
            self._note(f"tool call {name} failed: {event.text[:300]}")
        elif isinstance(event, ToolSourceFailed):
            self._note(f"MCP server {event.server} failed: {event.message}")
        elif isinstance(event, TurnAborted | TurnFailed):
            self._end_line()

    def _end_line(self) -> None:
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _note(self, text: str) -> None:
        """One line on stderr."""
        self.err.write(f"convmgr exec: {text}\n")
        self.err.flush()

    def _write(self, text: str) -> None:
        """Text on stdout, at once; a reader that went away stops the turn."""
        if self.gone.is_set():
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            # Nothing more can be written: later writes (and the flush at exit) go nowhere.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.out.fileno())
            os.close(null)
            self.gone.set()

    def congested(self) -> bool:
        """Never: stdout is written synchronously."""
        return False

    async def wait_ready(self) -> None:
        """Nothing to wait for."""


def read_prompt(prompt: str | None, stdin: TextIO) -> str:
    """The prompt: the argument, or stdin for `-` or none (unless stdin is a terminal)."""
    if prompt is not None and prompt != "-":
        text = prompt
    elif stdin.isatty():
        raise UsageError("no prompt: give PROMPT, or pipe it on stdin")
    else:
        try:
            text = stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the prompt on stdin is not UTF-8 text") from None
    if not text.strip():
        raise UsageError("the prompt is empty")
    return text


def exec_command(args: argparse.Namespace) -> int:
    """Run `convmgr exec`; the exit status."""
    try:
        if args.resume is not None and args.no_store:
            raise UsageError("--resume needs the store: it cannot go with --no-store")
        prompt = read_prompt(args.prompt, sys.stdin)
        return anyio.run(_run, args, prompt, backend_options={"use_uvloop": True})
    except (UsageError, StartupError) as exc:
        sys.stderr.write(f"convmgr exec: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace, prompt: str) -> int:
    """Open what the turn needs, run it, and close it all again."""
    configuration = load_configuration(args.config)
    providers = configuration.providers
    store = await open_configured_store(args, configuration.store)
    hub = McpHub(configuration.mcp_servers) if configuration.mcp_servers else None
    sink = PrintSink(sys.stdout, sys.stderr, as_json=args.json)
    limits = ToolLimits(max_tool_rounds=configuration.max_tool_rounds)
    try:
        async with AsyncExitStack() as stack:
            if hub is not None:
                await stack.enter_async_context(hub)
            manager = await stack.enter_async_context(
                ConversationManager(
                    store, providers, sink, toolbox=Toolbox(NoClient(), hub, limits)
                )
            )
            try:
                return await _one_turn(manager, sink, args, prompt)
            finally:
                with anyio.CancelScope(shield=True):
                    await manager.close_all("shutdown")
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
            await providers.aclose()


async def _open(manager: ConversationManager, args: argparse.Namespace) -> ConversationRecord:
    """The conversation the flags name: a new one, or a stored one resumed."""
    settings = ConversationSettings(provider=args.provider, model=args.model)
    try:
        if args.resume is not None:
            return await manager.resume_conversation(args.resume, settings)
        return await manager.new_conversation(args.conversation, settings)
    except ConversationNotFound:
        raise UsageError(f"no stored conversation {args.resume!r} to resume") from None
    except ConversationExists:
        raise UsageError(
            f"conversation {args.conversation!r} already exists: continue it with --resume"
        ) from None
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None


async def _one_turn(
    manager: ConversationManager, sink: PrintSink, args: argparse.Namespace, prompt: str
) -> int:
    """Run the turn to its terminal event; the exit status."""
    # Errors are returned as a status, not raised: raised here they would reach
    # the caller inside the manager's exception group.
    # Open first: a signal that comes while the conversation opens interrupts the turn.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            record = await _open(manager, args)
        except UsageError as exc:
            sys.stderr.write(f"convmgr exec: {exc}\n")
            return EXIT_USAGE
        except ConversationError as exc:
            # Open in another process, or the store failed: not the caller's usage.
            sys.stderr.write(f"convmgr exec: {exc.message}\n")
            return EXIT_FAILED
        conversation_id = record.conversation_id
        sys.stderr.write(f"conversation: {conversation_id}\n")
        _say_what_cannot_run(manager, record)
        sys.stderr.flush()
        try:
            manager.send_user_turn(conversation_id, [prompt], TurnSettings())
        except ConversationError as exc:
            # The stored conversation's provider is no longer configured, say.
            sys.stderr.write(f"convmgr exec: {exc.message}\n")
            return EXIT_USAGE
        interrupted = False
        async with anyio.create_task_group() as group:

            async def interrupt_on_signal() -> None:
                nonlocal interrupted
                async for signum in signals:
                    log.info("received signal %d; interrupting the turn", signum)
                    interrupted = interrupted or signum == signal.SIGINT
                    manager.interrupt(conversation_id)

            async def interrupt_when_stdout_is_gone() -> None:
                await sink.gone.wait()
                manager.interrupt(conversation_id)

            group.start_soon(interrupt_on_signal)
            group.start_soon(interrupt_when_stdout_is_gone)
            await sink.ended.wait()
            group.cancel_scope.cancel()
    terminal = sink.terminal
    if isinstance(terminal, TurnFailed):
        code = f" ({terminal.code})" if terminal.code else ""
        sys.stderr.write(f"convmgr exec: the turn failed: {terminal.message}{code}\n")
        return EXIT_FAILED
    if isinstance(terminal, TurnAborted):
        if interrupted:
            sys.stderr.write("convmgr exec: interrupted\n")
            return EXIT_INTERRUPTED
        if sink.gone.is_set():
            sys.stderr.write("convmgr exec: stdout was closed, so the turn was interrupted\n")
            return EXIT_FAILED
        sys.stderr.write(f"convmgr exec: the turn was aborted ({terminal.reason})\n")
        return EXIT_FAILED
    return EXIT_OK


def _say_what_cannot_run(manager: ConversationManager, record: ConversationRecord) -> None:
    """A note on stderr for tools that exec cannot answer: client tools, approvals."""
    settings = record.settings
    if settings.tools:
        names = ", ".join(str(tool.get("name")) for tool in settings.tools)
        sys.stderr.write(
            f"convmgr exec: note: the conversation declares client tools ({names}); "
            "exec cannot run them, so calls to them fail\n"
        )
    toolbox = manager.toolbox
    hub = toolbox.hub if toolbox is not None else None
    if hub is None:
        return
    asking = [name for name in mcp_servers_of(settings, hub) if hub.servers[name].approval == "ask"]
    if asking:
        sys.stderr.write(
            f"convmgr exec: note: MCP servers {', '.join(asking)} ask for approval, which "
            'exec cannot give: their calls are denied (approval = "auto" runs them)\n'
        )
