"""`interruptConversation` answers true exactly when the turn will end `turnAborted`."""

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from convmgr.core.manager import ConversationManager
from convmgr.model import ConversationRecord, ConversationSettings, Item, TurnSettings
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


class GatedCommitStore(MemoryStore):
    """A memory store whose turn commits wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.committing = anyio.Event()
        self.gate = anyio.Event()

    async def commit_turn(self, record: ConversationRecord, items: Sequence[Item]) -> None:
        self.committing.set()
        await self.gate.wait()
        await super().commit_turn(record, items)


class Events:
    """A sink that records event types per conversation."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.terminal = anyio.Event()

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: Any) -> None:
        self.types.append(event["type"])
        if event["type"] in ("turnComplete", "turnAborted", "turnFailed"):
            self.terminal.set()

    def congested(self) -> bool:
        return False

    async def wait_ready(self) -> None:
        return None


async def test_interrupt_while_the_finished_turn_is_saved_answers_false() -> None:
    store = GatedCommitStore()
    events = Events()
    async with ConversationManager(store, ProviderRegistry.echo_only(), events) as manager:
        await manager.new_conversation("c", ConversationSettings())
        manager.send_user_turn("c", ["all the words"], TurnSettings())
        await store.committing.wait()
        # The reply is complete and being saved: the outcome is decided.
        interrupted = manager.interrupt("c")
        store.gate.set()
        assert interrupted is False
        await events.terminal.wait()
        assert events.types[-1] == "turnComplete"
        await manager.close_all()


async def test_interrupt_before_the_turn_ends_answers_true_and_aborts() -> None:
    store = GatedCommitStore()
    store.gate.set()
    events = Events()
    async with ConversationManager(store, ProviderRegistry.echo_only(), events) as manager:
        await manager.new_conversation("c", ConversationSettings())
        manager.send_user_turn("c", ["words"], TurnSettings())
        # The turn's task has not run yet: the interrupt lands before any output.
        assert manager.interrupt("c") is True
        assert manager.interrupt("c") is False  # already stopping
        await events.terminal.wait()
        assert events.types[-1] == "turnAborted"
        await manager.close_all()
