"""`interruptConversation` answers true exactly when the turn will end `turnAborted`."""

from collections.abc import Sequence

import anyio
import pytest
from recorder import Recorder

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


async def test_interrupt_while_the_finished_turn_is_saved_answers_false() -> None:
    store = GatedCommitStore()
    events = Recorder()
    async with ConversationManager(store, ProviderRegistry.echo_only(), events) as manager:
        await manager.new_conversation("c", ConversationSettings())
        manager.send_user_turn("c", ["all the words"], TurnSettings())
        await store.committing.wait()
        # The reply is complete and being saved: the outcome is decided.
        interrupted = manager.interrupt("c")
        store.gate.set()
        assert interrupted is False
        await events.wait_for("c", "turnComplete")
        assert events.types("c")[-1] == "turnComplete"
        await manager.close_all()


async def test_interrupt_before_the_turn_ends_answers_true_and_aborts() -> None:
    store = GatedCommitStore()
    store.gate.set()
    events = Recorder()
    async with ConversationManager(store, ProviderRegistry.echo_only(), events) as manager:
        await manager.new_conversation("c", ConversationSettings())
        manager.send_user_turn("c", ["words"], TurnSettings())
        # The turn's task has not run yet: the interrupt lands before any output.
        assert manager.interrupt("c") is True
        assert manager.interrupt("c") is False  # already stopping
        await events.wait_for("c", "turnAborted")
        assert events.types("c")[-1] == "turnAborted"
        await manager.close_all()
