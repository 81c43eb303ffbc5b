"""An event sink for in-process tests: keeps every event as the convmgr dialect writes it."""

from typing import Any

import anyio

from convmgr.core.events import Event, ToolCallStarted
from convmgr.dialects.convmgr.events import ConversationEventParams
from convmgr.dialects.convmgr.notifications import event_params


class Recorder:
    """Keeps each event's `conversation/event` params (checked against the wire model)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = anyio.Event()

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: Event) -> None:
        if isinstance(event, ToolCallStarted):
            return  # not an event of the convmgr dialect (it takes no seq either)
        params = event_params(conversation_id, seq, turn_id, event)
        ConversationEventParams.model_validate(params)
        self.events.append(params)
        self._changed.set()
        self._changed = anyio.Event()

    def congested(self) -> bool:
        return False

    async def wait_ready(self) -> None:
        return None

    def of(self, conversation_id: str) -> list[dict[str, Any]]:
        """The events (wire `event` objects) of one conversation."""
        return [p["event"] for p in self.events if p["conversationId"] == conversation_id]

    def types(self, conversation_id: str) -> list[str]:
        """The types of one conversation's events, in order."""
        return [event["type"] for event in self.of(conversation_id)]

    def index(self, conversation_id: str, event_type: str) -> int:
        """Where the first event of that type in that conversation is in the whole record."""
        for n, p in enumerate(self.events):
            if p["conversationId"] == conversation_id and p["event"]["type"] == event_type:
                return n
        raise AssertionError(f"no {event_type} in {conversation_id}")

    async def wait_for(self, conversation_id: str, event_type: str, nth: int = 1) -> dict[str, Any]:
        """The nth event of that type in that conversation, once it has been emitted."""
        with anyio.fail_after(20):  # a hang guard only
            while True:
                found = [e for e in self.of(conversation_id) if e["type"] == event_type]
                if len(found) >= nth:
                    return found[nth - 1]
                await self._changed.wait()
