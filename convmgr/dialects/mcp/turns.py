"""The core's events in this dialect: a running tool call's progress, then its turn's outcome.

Every turn here is started by a `tools/call` (conversation_start or _reply),
which registers a TurnWatch before it yields, so the turn's first event finds
it. Reply deltas become `notifications/progress` when the call gave a
progressToken (`progress` = reply characters so far, `message` = the delta);
the terminal event settles the watch, and the call answers with it. Events of
no watched turn (a removed conversation's `shutdownComplete`, say) have no MCP
form and are dropped.
"""

import anyio

from convmgr.core import events as e
from convmgr.dialects.mcp.wire import ProgressNotificationParams
from convmgr.jsonrpc.outbound import Outbound

Terminal = e.TurnComplete | e.TurnAborted | e.TurnFailed


class TurnWatch:
    """One tool call's turn: what it streamed so far, and how it ended."""

    __slots__ = ("chars", "conversation_id", "done", "outcome", "token", "turn_id")

    def __init__(self, conversation_id: str, turn_id: str, token: str | int | None) -> None:
        self.conversation_id = conversation_id
        self.turn_id = turn_id
        self.token = token
        self.chars = 0
        self.outcome: Terminal | None = None
        self.done = anyio.Event()


class TurnEvents:
    """The manager's event sink for this dialect."""

    def __init__(self, outbound: Outbound) -> None:
        self._outbound = outbound
        # Until their terminal event: at most one per running turn.
        self._watches: dict[str, TurnWatch] = {}

    def watch(self, conversation_id: str, turn_id: str, token: str | int | None) -> TurnWatch:
        """Follow a turn that was just started (before anything yields to the event loop)."""
        watch = self._watches[turn_id] = TurnWatch(conversation_id, turn_id, token)
        return watch

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: e.Event) -> None:
        """Progress for a delta of a watched turn; its terminal event settles the watch."""
        watch = self._watches.get(turn_id) if turn_id is not None else None
        if watch is None:
            return
        if type(event) is e.AgentMessageDelta:
            delta = event.delta
            # `progress` must grow with every notification: an empty delta says nothing.
            if watch.token is not None and delta:
                watch.chars += len(delta)
                params: ProgressNotificationParams = {
                    "progressToken": watch.token,
                    "progress": watch.chars,
                    "message": delta,
                }
                self._outbound.send(
                    {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
                )
        elif isinstance(event, e.TurnComplete | e.TurnAborted | e.TurnFailed):
            del self._watches[watch.turn_id]
            watch.outcome = event
            watch.done.set()

    def congested(self) -> bool:
        """Whether more output is queued than a streaming turn may add to."""
        return self._outbound.congested()

    async def wait_ready(self) -> None:
        """Backpressure: wait while the client is behind."""
        await self._outbound.wait_ready()
