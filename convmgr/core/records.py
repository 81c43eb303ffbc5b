"""The stored form of a conversation: its settings and summary, without history."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A history item in its wire shape (see protocol.base.HistoryItem): plain dicts
# keep an idle conversation small and go to the wire and the store as they are.
Item = dict[str, Any]

PREVIEW_CHARS = 200


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with microseconds (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class ConversationRecord:
    """Everything about a conversation but its history items."""

    conversation_id: str
    provider: str
    model: str
    instructions: str | None = None
    cwd: str | None = None
    metadata: dict[str, Any] | None = None
    ephemeral: bool = False
    temperature: float | None = None
    max_output_tokens: int | None = None
    created_at: str = ""
    updated_at: str = ""
    forked_from: str | None = None
    history_length: int = 0
    last_seq: int = 0
    preview: str | None = None


def user_text(item: Item) -> str | None:
    """The text of a user message item, or None for any other item."""
    if item.get("type") != "message" or item.get("role") != "user":
        return None
    return "\n".join(str(part.get("text", "")) for part in item.get("content", ()))


def preview_of(items: list[Item]) -> str | None:
    """The first user message, cut to PREVIEW_CHARS characters."""
    for item in items:
        text = user_text(item)
        if text is not None:
            return text[:PREVIEW_CHARS]
    return None


def message_item(role: str, text: str) -> Item:
    """A message history item with one text part."""
    return {"type": "message", "role": role, "content": [{"type": "text", "text": text}]}
