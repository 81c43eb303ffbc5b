"""The turn loop: one turn of a conversation, from its input to its terminal event."""

import logging
from contextlib import aclosing
from dataclasses import replace

import anyio

from convmgr.core.conversation import Conversation, Turn
from convmgr.core.events import (
    AgentMessage,
    AgentMessageDelta,
    Event,
    EventSink,
    ReasoningDelta,
    StreamError,
    TokenUsage,
    TurnAborted,
    TurnComplete,
    TurnFailed,
    TurnStarted,
)
from convmgr.model import Item, message_item, preview_of, utc_now
from convmgr.providers import base as p
from convmgr.store.base import ConversationStore

log = logging.getLogger(__name__)


class TurnRun:
    """One running turn: streams the provider's reply, then saves and ends the turn.

    The reply so far (text, reasoning, usage) and the failure, if any, are its
    state; `run` is the turn's task.
    """

    def __init__(
        self,
        conv: Conversation,
        turn: Turn,
        request: p.TurnRequest,
        provider: p.Provider,
        store: ConversationStore,
        sink: EventSink,
    ) -> None:
        self.conv = conv
        self.turn = turn
        self.request = request
        self.provider = provider
        self.store = store
        self.sink = sink
        self.user_item = message_item("user", request.input_text)
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.usage: p.Usage | None = None
        self.failure: TurnFailed | None = None

    async def run(self) -> None:
        """The turn's task: turnStarted, the reply's events, then exactly one terminal event."""
        conv, turn = self.conv, self.turn
        conv.emit(turn.turn_id, TurnStarted())
        with turn.scope:
            try:
                await self._stream()
            except p.ProviderError as exc:
                self.failure = TurnFailed(exc.message, exc.code)
            except Exception:
                log.exception("turn %s of %s failed", turn.turn_id, conv.conversation_id)
                self.failure = TurnFailed("internal error in the turn", "internal")
        # Saving and the terminal event must happen even while being cancelled.
        with anyio.CancelScope(shield=True):
            await self._finish()

    async def _stream(self) -> None:
        conv, turn_id, sink = self.conv, self.turn.turn_id, self.sink
        request = self.request
        if self.provider.needs_history:
            prior = await self.store.read_items(conv.conversation_id, 0, None)
            request = replace(request, history=[*prior, self.user_item])
        text, reasoning = self.text, self.reasoning
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
                elif type(event) is p.Usage:
                    self.usage = event
                elif type(event) is p.Retrying:
                    # The failed attempt's deltas are void: start the text over.
                    text.clear()
                    reasoning.clear()
                    conv.emit(turn_id, StreamError(event.message, event.attempt, event.retry_in_ms))

    def _outcome(self) -> tuple[list[Item], list[Event]]:
        """The items the turn adds to the history and its closing events."""
        turn = self.turn
        reply = "".join(self.text)
        items: list[Item] = [self.user_item]
        if turn.scope.cancel_called:
            # An aborted turn keeps what the client already saw of the reply.
            items += self._reply_items(reply, keep_empty=False)
            return items, [TurnAborted(turn.abort_reason)]
        if self.failure is not None:
            return items, [self.failure]
        items += self._reply_items(reply, keep_empty=True)
        finals: list[Event] = [AgentMessage(reply)]
        if self.usage is not None:
            u = self.usage
            finals.append(TokenUsage(u.input_tokens, u.output_tokens, u.total_tokens))
        finals.append(TurnComplete(reply))
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
            log.exception("could not save turn %s of %s", turn.turn_id, conv.conversation_id)
            record.updated_at, record.history_length, record.last_seq, record.preview = old
            finals = [TurnFailed(f"could not save the turn: {exc}", "store")]
        for event in finals:
            conv.emit(turn.turn_id, event)
        conv.turn = None
        turn.done.set()
