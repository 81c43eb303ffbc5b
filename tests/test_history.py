"""Fork's history rule: drop the last N user messages and everything after each."""

from hypothesis import given
from hypothesis import strategies as st

from convmgr.model import Item, is_user_message, message_item, truncate_after_dropping_last_messages


def _text(item: Item) -> str:
    if item["type"] == "message":
        return str(item["content"][0]["text"])
    return str(item["type"])


# The seed's unit case: u1 a1 a2 u2 a3 reasoning functionCall a4.
SEED: list[Item] = [
    message_item("user", "u1"),
    message_item("assistant", "a1"),
    message_item("assistant", "a2"),
    message_item("user", "u2"),
    message_item("assistant", "a3"),
    {"type": "reasoning", "text": "thinking"},
    {"type": "functionCall", "callId": "c1", "name": "tool", "arguments": "{}"},
    message_item("assistant", "a4"),
]


def test_drop_one_keeps_items_before_the_last_user_message() -> None:
    assert [_text(i) for i in truncate_after_dropping_last_messages(SEED, 1)] == [
        "u1",
        "a1",
        "a2",
    ]


def test_drop_two_keeps_nothing() -> None:
    assert truncate_after_dropping_last_messages(SEED, 2) == []


def test_drop_zero_keeps_all() -> None:
    assert truncate_after_dropping_last_messages(SEED, 0) == SEED


def test_drop_more_than_there_are_leaves_empty() -> None:
    assert truncate_after_dropping_last_messages(SEED, 3) == []


def test_system_and_assistant_messages_are_not_counted() -> None:
    items = [message_item("system", "s"), message_item("user", "u"), message_item("system", "t")]
    assert truncate_after_dropping_last_messages(items, 1) == [message_item("system", "s")]


_items = st.lists(
    st.sampled_from(
        [
            message_item("user", "u"),
            message_item("assistant", "a"),
            message_item("system", "s"),
            {"type": "reasoning", "text": "r"},
        ]
    ),
    max_size=30,
)


@given(_items, st.integers(min_value=0, max_value=40))
def test_result_is_a_prefix_with_n_fewer_user_messages(items: list[Item], n: int) -> None:
    kept = truncate_after_dropping_last_messages(items, n)
    assert kept == items[: len(kept)]
    users = sum(map(is_user_message, items))
    assert sum(map(is_user_message, kept)) == max(0, users - n)
    if 0 < n <= users:
        # The first dropped item is exactly the n-th user message from the end.
        assert is_user_message(items[len(kept)])
