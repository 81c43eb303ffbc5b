"""The turn loop: one turn of a conversation, from its input to its terminal event.

model call → the function calls it asks for, run concurrently → next model call,
until a reply without calls (or max_tool_rounds model calls).
"""

import logging
import time
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import anyio

from convmgr.core.client import ToolRequest
from convmgr.core.conversation import Conversation, Turn
from convmgr.core.events import (
    AgentMessage,
    AgentMessageDelta,
    Event,
    EventSink,
    ReasoningDelta,
    StreamError,
    TokenUsage,
    ToolCall,
    ToolCallStarted,
    ToolResult,
    ToolSourceFailed,
    TurnAborted,
    TurnComplete,
    TurnFailed,
    TurnStarted,
)
from convmgr.core.tools import ABORTED, Toolbox, TurnTools, parse_arguments
from convmgr.logs import content, fields
from convmgr.model import (
    CommitOutcomeUnknown,
    Item,
    LeaseLost,
    ToolOutcome,
    function_call_item,
    function_call_output_item,
    is_user_message,
    message_item,
    preview_of,
    utc_now,
)
from convmgr.providers import base as p
from convmgr.store.base import ConversationStore

log = logging.getLogger(__name__)

# Reading back a commit whose outcome is unknown: first wait, and the cap.
_RESOLVE_FIRST_S = 0.05
_RESOLVE_MAX_S = 2.0


class TurnRun:
    """One running turn: its model calls and tool rounds, then saving and the terminal event.

    The turn's items so far, the current model call's reply, the calls being
    run and the failure, if any, are its state; `run` is the turn's task.
    """

    def __init__(
        self,
        conv: Conversation,
        turn: Turn,
        request: p.TurnRequest,
        provider: p.Provider,
        store: ConversationStore,
        sink: EventSink,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.conv = conv
        self.turn = turn
        self.request = request
        self.provider = provider
        self.store = store
        self.sink = sink
        self.toolbox = toolbox
        self.user_item = message_item("user", request.input_text)
        # Whole rounds so far: replies with calls, the calls and their outputs.
        self.items: list[Item] = []
        # The current model call's reply.
        self.text: list[str] = []
        self.reasoning: list[str] = []
        # The calls being run, and their outcomes as they end.
        self.calls: list[p.ToolCallRequest] = []
        self.outcomes: list[ToolOutcome | None] = []
        # What the finished model calls used, and the current one (its stream reports its
        # total last); the turn's usage is their sum.
        self.spent: p.Usage | None = None
        self.call_usage: p.Usage | None = None
        self.failure: TurnFailed | None = None
        # Why the current model call ended: stop, length or refusal.
        self.finish_reason = "stop"
        # For the log: when the turn started, and how many calls the model asked for.
        self.started = time.monotonic()
        self.tool_calls = 0

    async def run(self) -> None:
        """The turn's task: turnStarted, the reply's events, then exactly one terminal event."""
        conv, turn = self.conv, self.turn
        self.started = time.monotonic()
        # Guarded: building the fields costs more than the check, on every turn.
        if log.isEnabledFor(logging.INFO):
            log.info(
                "turn started",
                extra=fields(
                    conversation_id=conv.conversation_id,
                    turn_id=turn.turn_id,
                    provider=self.provider.name,
                    model=self.request.model,
                ),
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "turn input",
                extra=fields(turn_id=turn.turn_id, text=content(self.request.input_text)),
            )
        conv.emit(turn.turn_id, TurnStarted())
        with turn.scope:
            try:
                await self._loop()
            except p.ProviderError as exc:
                self.failure = TurnFailed(exc.message, exc.code)
            except Exception:
                log.exception("turn %s of %s failed", turn.turn_id, conv.conversation_id)
                self.failure = TurnFailed("internal error in the turn", "internal")
        # Saving and the terminal event must happen even while being cancelled.
        with anyio.CancelScope(shield=True):
            await self._finish()

    async def _loop(self) -> None:
        request = self.request
        tools: TurnTools | None = None
        own_servers = self.conv.mcp_servers
        # The history, read once: what the provider is sent, and the count of earlier turns.
        prior: list[Item] | None = None
        if self.provider.needs_history:
            prior = await self.store.read_items(self.conv.conversation_id, 0, None)
        if self.toolbox is not None and self.toolbox.uses_tools(
            self.conv.record.settings, own_servers
        ):
            tools, failures = await self.toolbox.for_turn(
                self.conv.record.settings, self.conv.always_allowed, own_servers
            )
            for server, message in failures:
                self.conv.emit(self.turn.turn_id, ToolSourceFailed(server, message))
            conv = self.conv
            if conv.turns is None:
                history = prior
                if history is None:
                    history = await self.store.read_items(conv.conversation_id, 0, None)
                conv.turns = sum(1 for item in history if is_user_message(item))
            conv.turns += 1
            request = replace(
                request, tools=tools.functions(), turn_number=conv.turns, has_tools=True
            )
        if prior is not None:
            prior.append(self.user_item)
        max_rounds = self.toolbox.limits.max_tool_rounds if self.toolbox is not None else 1
        rounds = 0
        while True:
            rounds += 1
            if prior is None and not self.items:
                sent_request = request  # the common case: one model call, no history to send
            else:
                turn_items = tuple(self.items)
                sent = () if prior is None else (*prior, *turn_items)
                sent_request = replace(request, history=sent, turn_items=turn_items)
            calls = await self._model_call(sent_request)
            if not calls or tools is None:
                return
            if rounds >= max_rounds:
                self.failure = TurnFailed(
                    f"the model still asked for tools after {max_rounds} model calls "
                    "(max_tool_rounds)",
                    "tool_rounds",
                )
                return
            reply = "".join(self.text)
            if reply:
                self.conv.emit(self.turn.turn_id, AgentMessage(reply))
            self.items += self._reply_items(reply, keep_empty=False)
            self.text, self.reasoning = [], []
            await self._run_calls(calls, tools)

    async def _model_call(self, request: p.TurnRequest) -> list[p.ToolCallRequest]:
        """Stream one model call; the calls it asks for."""
        conv, turn_id, sink = self.conv, self.turn.turn_id, self.sink
        text, reasoning = self.text, self.reasoning
        calls: list[p.ToolCallRequest] = []
        self.finish_reason = "stop"
        # aclosing: an abort landing between two events closes the stream
        # (an HTTP response) now, not when the generator is collected.
        async with aclosing(self.provider.stream(request)) as events:
            async for event in events:
                if type(event) is p.TextDelta:
                    text.append(event.text)
                    if sink.congested():
                        await sink.wait_ready()
                    conv.emit(turn_id, AgentMessageDelta(event.text))
                elif type(event) is p.ReasoningDelta:
                    reasoning.append(event.text)
                    if sink.congested():
                        await sink.wait_ready()
                    conv.emit(turn_id, ReasoningDelta(event.text))
                elif type(event) is p.ToolCallRequest:
                    calls.append(event)
                elif type(event) is p.Usage:
                    self.call_usage = event
                elif type(event) is p.Finish:
                    self.finish_reason = event.reason
                elif type(event) is p.Retrying:
                    # The failed attempt is void: its text, and calls not yet run.
                    text.clear()
                    reasoning.clear()
                    calls.clear()
                    self.finish_reason = "stop"
                    conv.emit(turn_id, StreamError(event.message, event.attempt, event.retry_in_ms))
        return calls

    @property
    def usage(self) -> p.Usage | None:
        """The turn's token usage so far: the sum over its model calls."""
        return _added(self.spent, self.call_usage)

    async def _run_calls(self, calls: list[p.ToolCallRequest], tools: TurnTools) -> None:
        """Run one reply's calls concurrently; their items go into the history in model order."""
        self.spent, self.call_usage = self.usage, None
        conv, turn_id = self.conv, self.turn.turn_id
        self.calls, self.outcomes = calls, [None] * len(calls)
        self.tool_calls += len(calls)
        debug = log.isEnabledFor(logging.DEBUG)
        requests = []
        for call in calls:
            arguments, shown = parse_arguments(call.arguments)
            entry = tools.entry(call.name)
            mcp = entry.mcp if entry is not None else None
            conv.emit(
                turn_id,
                ToolCall(
                    call.call_id,
                    call.name,
                    shown,
                    "mcp" if mcp is not None else "client",
                    mcp.server if mcp is not None else None,
                    mcp.tool if mcp is not None else None,
                ),
            )
            requests.append((arguments, entry, mcp))
            if debug:
                log.debug(
                    "tool call",
                    extra=fields(
                        turn_id=turn_id,
                        call_id=call.call_id,
                        name=call.name,
                        source="mcp" if mcp is not None else "client",
                        arguments=content(call.arguments),
                    ),
                )

        async def one(index: int) -> None:
            call = calls[index]
            arguments, entry, mcp = requests[index]
            if arguments is None:
                outcome = ToolOutcome(
                    f"the arguments are not a JSON object: {call.arguments[:200]}", is_error=True
                )
            else:
                request = ToolRequest(
                    conv.conversation_id,
                    turn_id,
                    call.call_id,
                    call.name,
                    arguments,
                    "mcp" if mcp is not None else "client",
                    mcp.server if mcp is not None else None,
                )
                outcome = await tools.run(
                    request,
                    entry,
                    lambda: conv.note(turn_id, ToolCallStarted(call.call_id)),
                )
            self.outcomes[index] = outcome
            if debug:
                log.debug(
                    "tool result",
                    extra=fields(
                        turn_id=turn_id,
                        call_id=call.call_id,
                        is_error=outcome.is_error,
                        denied=outcome.denied or None,
                        output=content(outcome.text),
                    ),
                )
            conv.emit(
                turn_id, ToolResult(call.call_id, outcome.text, outcome.is_error, outcome.denied)
            )

        async with anyio.create_task_group() as group:
            for index in range(len(calls)):
                group.start_soon(one, index)
        self.items += self._call_items()
        self.calls, self.outcomes = [], []

    def _call_items(self) -> list[Item]:
        """The running calls and their outputs ("aborted" for those without one)."""
        items = [function_call_item(c.call_id, c.name, c.arguments) for c in self.calls]
        for call, outcome in zip(self.calls, self.outcomes, strict=True):
            done = outcome or ABORTED
            items.append(function_call_output_item(call.call_id, done.text, done.is_error))
        return items

    def _outcome(self) -> tuple[list[Item], list[Event]]:
        """The items the turn adds to the history and its closing events."""
        turn = self.turn
        reply = "".join(self.text)
        items: list[Item] = [self.user_item, *self.items]
        if turn.scope.cancel_called and self.failure is None:
            finals: list[Event] = []
            if self.calls:
                # Calls cut short are stored as aborted: the next request stays well-formed.
                items += self._call_items()
                finals += [
                    ToolResult(call.call_id, ABORTED.text, True)
                    for call, outcome in zip(self.calls, self.outcomes, strict=True)
                    if outcome is None
                ]
            else:
                # An aborted turn keeps what the client already saw of the reply.
                items += self._reply_items(reply, keep_empty=False)
            return items, [*finals, TurnAborted(turn.abort_reason)]
        if self.failure is not None:
            return items, [self.failure]
        items += self._reply_items(reply, keep_empty=True)
        finals = [AgentMessage(reply)]
        if self.usage is not None:
            u = self.usage
            last = self.call_usage
            finals.append(
                TokenUsage(
                    u.input_tokens,
                    u.output_tokens,
                    u.total_tokens,
                    last.total_tokens if last is not None else None,
                )
            )
        finals.append(TurnComplete(reply, self.finish_reason))
        return items, finals

    def _reply_items(self, reply: str, *, keep_empty: bool) -> list[Item]:
        items: list[Item] = []
        if self.reasoning:
            items.append({"type": "reasoning", "text": "".join(self.reasoning)})
        if reply or keep_empty:
            items.append(message_item("assistant", reply))
        return items

    async def _finish(self) -> None:
        conv, turn = self.conv, self.turn
        # Decided here, before the first await: an interrupt that comes while the
        # turn is saved must answer false, as the turn will not end aborted.
        turn.settled = True
        items, finals = self._outcome()
        record = conv.record
        old = (record.updated_at, record.history_length, record.last_seq, record.preview)
        record.updated_at = utc_now()
        record.history_length += len(items)
        record.last_seq = conv.seq + len(finals)
        if record.preview is None:
            record.preview = preview_of(items)
        try:
            await self.store.commit_turn(record, items)
        except Exception as exc:
            landed = await self._landed(old[1]) if isinstance(exc, CommitOutcomeUnknown) else False
            if isinstance(exc, LeaseLost):
                # Fenced: another process holds the conversation now; nothing was written.
                record.updated_at, record.history_length, record.last_seq, record.preview = old
                finals = [TurnAborted("leaseLost")]
            elif landed:
                log.warning(
                    "turn %s of %s was saved although its commit reported: %s",
                    turn.turn_id,
                    conv.conversation_id,
                    exc,
                )
            elif landed is None:
                log.error(
                    "turn %s of %s: stopped before the store could tell whether it was saved",
                    turn.turn_id,
                    conv.conversation_id,
                )
                finals = [
                    TurnFailed(
                        "the server stopped before the store could tell whether the turn was "
                        "saved; it may have been: resume the conversation to see",
                        "commit_unknown",
                    )
                ]
            else:
                log.exception("could not save turn %s of %s", turn.turn_id, conv.conversation_id)
                record.updated_at, record.history_length, record.last_seq, record.preview = old
                finals = [TurnFailed(f"could not save the turn: {exc}", "store")]
        for event in finals:
            conv.emit(turn.turn_id, event)
        conv.turn = None
        turn.done.set()
        self._log_end(finals[-1])

    def _log_end(self, terminal: Event) -> None:
        """The turn's end in the log: outcome, duration, calls (and the reply at debug)."""
        if not log.isEnabledFor(logging.INFO):
            return
        outcome, detail = "complete", dict[str, Any]()
        if isinstance(terminal, TurnAborted):
            outcome, detail = "aborted", {"reason": terminal.reason}
        elif isinstance(terminal, TurnFailed):
            outcome, detail = "failed", {"error": terminal.message, "code": terminal.code}
        elif isinstance(terminal, TurnComplete):
            detail = {"finish_reason": terminal.finish_reason}
        usage = self.usage
        log.info(
            "turn ended",
            extra=fields(
                conversation_id=self.conv.conversation_id,
                turn_id=self.turn.turn_id,
                outcome=outcome,
                duration_ms=round((time.monotonic() - self.started) * 1000),
                tool_calls=self.tool_calls,
                **detail,
                total_tokens=usage.total_tokens if usage is not None else None,
            ),
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "turn reply",
                extra=fields(turn_id=self.turn.turn_id, text=content("".join(self.text))),
            )

    async def _landed(self, length_before: int) -> bool | None:
        """Whether a commit whose outcome is unknown landed: read back until the store answers.

        Only this process writes the conversation (it holds the lease), so its
        stored length is either what it was before the turn or what the turn made
        it. The conversation stays busy meanwhile. None: the server is stopping
        and the store has not answered.
        """
        turn = self.turn
        turn.resolving = anyio.CancelScope()
        if turn.stopping:
            turn.resolving.cancel()
        with turn.resolving:
            return await self._read_back(length_before)
        return None

    async def _read_back(self, length_before: int) -> bool:
        delay = _RESOLVE_FIRST_S
        while True:
            try:
                stored = await self.store.get(self.conv.conversation_id)
            except Exception as exc:
                log.warning(
                    "cannot tell yet whether turn %s was saved (%s); reading again in %g s",
                    self.turn.turn_id,
                    exc,
                    delay,
                )
            else:
                return stored is not None and stored.history_length != length_before
            await anyio.sleep(delay)
            delay = min(delay * 2, _RESOLVE_MAX_S)


def _added(a: p.Usage | None, b: p.Usage | None) -> p.Usage | None:
    """The sum of two usages, either of which may be missing."""
    if a is None or b is None:
        return a or b
    return p.Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.total_tokens + b.total_tokens,
    )
