"""The manager's event sink in ACP: `session/update` notifications, and each prompt's answer.

A `session/prompt` is answered when its turn ends: the sink sees every
conversation's terminal event, so it settles the prompt waiting for that turn
there, right after the turn's last update was queued.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from convmgr.core import events as e
from convmgr.dialects.acp.translate import stop_reason, update_of
from convmgr.jsonrpc.outbound import Outbound


@dataclass(slots=True)
class PendingPrompt:
    """A prompt waiting for its turn's end: then its stopReason, or the turn's failure."""

    turn_id: str
    done: anyio.Event = field(default_factory=anyio.Event)
    stop_reason: str | None = None
    failure: e.TurnFailed | None = None
    usage: dict[str, int] | None = None


class SessionUpdates:
    """The ACP dialect's EventSink."""

    def __init__(self, outbound: Outbound) -> None:
        self._outbound = outbound
        self._prompts: dict[str, PendingPrompt] = {}
        # A session's model context window in tokens, when its provider's config gives one.
        self.window_of: Callable[[str], int | None] = lambda session_id: None

    def expect(self, session_id: str, turn_id: str) -> PendingPrompt:
        """Wait for the end of this turn (called before the turn's task can run)."""
        prompt = PendingPrompt(turn_id)
        self._prompts[session_id] = prompt
        return prompt

    def forget(self, session_id: str, prompt: PendingPrompt) -> None:
        """Stop waiting (the prompt's request was cancelled)."""
        if self._prompts.get(session_id) is prompt:
            del self._prompts[session_id]

    def send(self, session_id: str, update: dict[str, Any]) -> None:
        """Queue one `session/update`."""
        self._outbound.send(
            {
                "jsonrpc": "2.0",
                "method": "session/update",
                "params": {"sessionId": session_id, "update": update},
            }
        )

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: e.Event) -> None:
        """Queue the event's update, if it has one; settle the prompt at its turn's end."""
        if type(event) is e.AgentMessageDelta:
            # Built in place: this runs once per streamed delta.
            self._outbound.send(
                {
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {
                        "sessionId": conversation_id,
                        "update": {
                            "sessionUpdate": "agent_message_chunk",
                            "content": {"type": "text", "text": event.delta},
                        },
                    },
                }
            )
            return
        if isinstance(event, e.TERMINAL):
            self._settle(conversation_id, turn_id, event)
            return
        if type(event) is e.TokenUsage:
            prompt = self._prompts.get(conversation_id)
            if prompt is not None and prompt.turn_id == turn_id:
                prompt.usage = {
                    "inputTokens": event.input_tokens,
                    "outputTokens": event.output_tokens,
                    "totalTokens": event.total_tokens,
                }
            window = self.window_of(conversation_id)
            if window is not None:
                # ACP's usage_update needs the window's size: sent only when it is known.
                used = event.context_tokens
                self.send(
                    conversation_id,
                    {
                        "sessionUpdate": "usage_update",
                        "used": used if used is not None else event.total_tokens,
                        "size": window,
                    },
                )
            return
        update = update_of(event)
        if update is not None:
            self.send(conversation_id, update)

    def _settle(
        self,
        conversation_id: str,
        turn_id: str | None,
        event: e.TurnComplete | e.TurnAborted | e.TurnFailed,
    ) -> None:
        prompt = self._prompts.get(conversation_id)
        if prompt is None or prompt.turn_id != turn_id:
            return
        del self._prompts[conversation_id]
        prompt.stop_reason = stop_reason(event)
        if prompt.stop_reason is None and isinstance(event, e.TurnFailed):
            prompt.failure = event
        prompt.done.set()

    def congested(self) -> bool:
        """Whether more output is queued than a streaming turn may add to."""
        return self._outbound.congested()

    async def wait_ready(self) -> None:
        """Backpressure: wait while the client is behind."""
        await self._outbound.wait_ready()
