"""ConversationManager in process, on the memory store, with a recording event sink."""

from collections.abc import AsyncIterator

import pytest
from recorder import Recorder

from convmgr.core.manager import ConversationManager
from convmgr.model import (
    ConversationBusy,
    ConversationExists,
    ConversationNotFound,
    ConversationSettings,
    InvalidArgument,
    Overloaded,
    TurnSettings,
    message_item,
)
from convmgr.providers.registry import ProviderRegistry
from convmgr.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def env() -> AsyncIterator[tuple[ConversationManager, Recorder, MemoryStore]]:
    recorder = Recorder()
    store = MemoryStore()
    async with ConversationManager(store, ProviderRegistry.echo_only(), recorder) as manager:
        yield manager, recorder, store
        await manager.close_all()


async def test_new_get_and_turn(env: tuple[ConversationManager, Recorder, MemoryStore]) -> None:
    manager, rec, _ = env
    record = await manager.new_conversation("c1", ConversationSettings(instructions="be brief"))
    assert (record.provider, record.model, record.settings.instructions) == (
        "echo",
        "echo",
        "be brief",
    )
    manager.send_user_turn("c1", ["hello  big", "world"], TurnSettings())
    done = await rec.wait_for("c1", "turnComplete")
    assert done["lastAgentMessage"] == "hello  big\nworld"
    assert rec.types("c1") == [
        "turnStarted",
        "agentMessageDelta",
        "agentMessageDelta",
        "agentMessageDelta",
        "agentMessage",
        "tokenUsage",
        "turnComplete",
    ]
    assert [e["seq"] for e in rec.events] == list(range(1, 8))
    view = await manager.get_conversation("c1")
    assert view.record.history_length == 2
    assert view.record.last_seq == 7
    assert view.record.preview == "hello  big\nworld"
    assert await manager.read_history("c1") == [
        message_item("user", "hello  big\nworld"),
        message_item("assistant", "hello  big\nworld"),
    ]


async def test_echo_deltas_concatenate_to_the_input(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, rec, _ = env
    await manager.new_conversation("c", ConversationSettings())
    text = "  lead\tand  trailing \n "
    manager.send_user_turn("c", [text], TurnSettings())
    await rec.wait_for("c", "turnComplete")
    deltas = [e["delta"] for e in rec.of("c") if e["type"] == "agentMessageDelta"]
    assert deltas == ["  lead\t", "and  ", "trailing \n "]


async def test_empty_input_gives_no_delta(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, rec, _ = env
    await manager.new_conversation("c", ConversationSettings())
    manager.send_user_turn("c", [""], TurnSettings())
    done = await rec.wait_for("c", "turnComplete")
    assert "agentMessageDelta" not in rec.types("c")
    assert done["lastAgentMessage"] == ""


async def test_errors(env: tuple[ConversationManager, Recorder, MemoryStore]) -> None:
    manager, rec, _ = env
    await manager.new_conversation("c", ConversationSettings())
    with pytest.raises(ConversationExists):
        await manager.new_conversation("c", ConversationSettings())
    with pytest.raises(ConversationNotFound):
        await manager.get_conversation("nope")
    with pytest.raises(ConversationNotFound):
        manager.send_user_turn("nope", ["x"], TurnSettings())
    with pytest.raises(InvalidArgument):
        await manager.new_conversation("d", ConversationSettings(provider="missing"))
    manager.send_user_turn("c", ["word " * 1000], TurnSettings())
    with pytest.raises(ConversationBusy):
        manager.send_user_turn("c", ["again"], TurnSettings())
    await rec.wait_for("c", "turnComplete")


async def test_max_conversations() -> None:
    async with ConversationManager(
        MemoryStore(), ProviderRegistry.echo_only(), Recorder(), max_conversations=2
    ) as manager:
        await manager.new_conversation("a", ConversationSettings())
        await manager.new_conversation("b", ConversationSettings())
        with pytest.raises(Overloaded):
            await manager.new_conversation("c", ConversationSettings())
        await manager.remove_conversation("a", delete_history=False)
        await manager.new_conversation("c", ConversationSettings())
        await manager.close_all()


async def test_interrupt_and_remove(env: tuple[ConversationManager, Recorder, MemoryStore]) -> None:
    manager, rec, _ = env
    await manager.new_conversation("c", ConversationSettings())
    manager.send_user_turn("c", ["w " * 1_000_000], TurnSettings())
    await rec.wait_for("c", "agentMessageDelta")
    assert manager.interrupt("c") is True
    aborted = await rec.wait_for("c", "turnAborted")
    assert aborted["reason"] == "interrupted"
    assert manager.interrupt("c") is False
    manager.send_user_turn("c", ["w " * 1_000_000], TurnSettings())
    assert await manager.remove_conversation("c", delete_history=False) is True
    types = rec.types("c")
    assert types[-2:] == ["turnAborted", "shutdownComplete"]
    assert rec.events[-2]["event"]["reason"] == "removed"
    assert manager.loaded("c") is None
    assert await manager.remove_conversation("c", delete_history=False) is False
    # History stays: resumable, and seq continues from where the store left it.
    record = await manager.resume_conversation("c", ConversationSettings())
    assert record.history_length >= 2


async def test_fork_drops_last_user_messages(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, rec, _ = env
    await manager.new_conversation("src", ConversationSettings(model="m1"))
    for nth, text in enumerate(("one", "two", "three"), start=1):
        manager.send_user_turn("src", [text], TurnSettings())
        await rec.wait_for("src", "turnComplete", nth)
    fork = await manager.fork_conversation(
        "src", None, 2, ConversationSettings(instructions="forked"), "f1"
    )
    assert (fork.forked_from, fork.model, fork.settings.instructions) == ("src", "m1", "forked")
    assert await manager.read_history("f1") == [
        message_item("user", "one"),
        message_item("assistant", "one"),
    ]
    everything = await manager.fork_conversation("src", None, 0, ConversationSettings(), "f0")
    assert everything.history_length == 6
    empty = await manager.fork_conversation("src", None, 9, ConversationSettings(), "f9")
    assert empty.history_length == 0


async def test_fork_of_running_conversation_sees_completed_turns_only(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, rec, _ = env
    await manager.new_conversation("src", ConversationSettings())
    manager.send_user_turn("src", ["first"], TurnSettings())
    await rec.wait_for("src", "turnComplete")
    manager.send_user_turn("src", ["w " * 100_000], TurnSettings())
    await rec.wait_for("src", "agentMessageDelta")
    fork = await manager.fork_conversation("src", None, 0, ConversationSettings(), "f")
    assert fork.history_length == 2


async def test_ephemeral_conversation_keeps_history_in_memory_only(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, rec, store = env
    await manager.new_conversation("e", ConversationSettings(ephemeral=True))
    manager.send_user_turn("e", ["hi"], TurnSettings())
    await rec.wait_for("e", "turnComplete")
    assert len(await manager.read_history("e")) == 2
    assert await store.get("e") is None
    await manager.remove_conversation("e", delete_history=False)
    with pytest.raises(ConversationNotFound):
        await manager.resume_conversation("e", ConversationSettings())


async def test_list_is_newest_first_with_cursor(
    env: tuple[ConversationManager, Recorder, MemoryStore],
) -> None:
    manager, _, _ = env
    for i in range(7):
        await manager.new_conversation(f"c{i}", ConversationSettings())
    seen: list[str] = []
    cursor = None
    while True:
        views, cursor = await manager.list_conversations(cursor, 3)
        seen += [v.record.conversation_id for v in views]
        if cursor is None:
            break
    assert seen == [f"c{i}" for i in reversed(range(7))]
