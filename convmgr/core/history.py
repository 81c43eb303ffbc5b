"""Pure functions over conversation history."""

from collections.abc import Sequence

from convmgr.core.records import Item


def is_user_message(item: Item) -> bool:
    """Whether an item is a `message` whose role is `user` (the only items fork counts)."""
    return item.get("type") == "message" and item.get("role") == "user"


def truncate_after_dropping_last_messages(items: Sequence[Item], n: int) -> list[Item]:
    """Drop the last `n` user messages and everything after each of them.

    0 keeps the whole history; more than there are user messages leaves none.
    """
    if n <= 0:
        return list(items)
    seen = 0
    for index in range(len(items) - 1, -1, -1):
        if is_user_message(items[index]):
            seen += 1
            if seen == n:
                return list(items[:index])
    return []
