"""The shared model: history items, conversation settings and records, the domain errors.

Everything above it (providers, tools, store, core, dialects) speaks these types;
this module imports nothing of convmgr.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

# A history item in its wire shape (see dialects/convmgr/items.py): plain dicts
# keep an idle conversation small and go to the wire and the store as they are.
Item = dict[str, Any]

PREVIEW_CHARS = 200


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with microseconds (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


@dataclass(slots=True, frozen=True)
class ConversationSettings:
    """A conversation's settings: the one list of them. None means "not given".

    Everything else derives from this class: the store keeps the given fields
    as one JSON object, export writes them, overrides overlay them, and the
    wire's params name the same fields (in camelCase).
    """

    provider: str | None = None
    model: str | None = None
    instructions: str | None = None
    cwd: str | None = None
    metadata: dict[str, Any] | None = None
    ephemeral: bool | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    # Client tools in their wire shape: [{name, description, inputSchema}].
    tools: list[dict[str, Any]] | None = None
    # The configured MCP servers the conversation uses (None: all of them).
    mcp_servers: list[str] | None = None

    def overlay(self, overrides: "ConversationSettings | None") -> "ConversationSettings":
        """These settings with every field `overrides` gives replaced."""
        if overrides is None:
            return self
        return replace(self, **overrides.given())

    def given(self) -> dict[str, Any]:
        """The fields that are set, by name (the stored and exported form)."""
        return {
            name: value for name in SETTINGS_FIELDS if (value := getattr(self, name)) is not None
        }

    @classmethod
    def from_given(cls, values: dict[str, Any]) -> "ConversationSettings":
        """Settings from given(): unknown names (a newer version's) are left out."""
        return cls(**{name: values[name] for name in SETTINGS_FIELDS if name in values})


SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ConversationSettings))


@dataclass(slots=True)
class ConversationRecord:
    """Everything about a conversation but its history items."""

    conversation_id: str
    # Resolved: provider and model are always set.
    settings: ConversationSettings
    created_at: str = ""
    updated_at: str = ""
    forked_from: str | None = None
    history_length: int = 0
    last_seq: int = 0
    preview: str | None = None

    @property
    def provider(self) -> str:
        """The provider's name."""
        return self.settings.provider or ""

    @property
    def model(self) -> str:
        """The model's name."""
        return self.settings.model or ""

    @property
    def ephemeral(self) -> bool:
        """Whether the conversation is never stored."""
        return bool(self.settings.ephemeral)


@dataclass(slots=True, frozen=True)
class TurnSettings:
    """Per-turn overrides of the conversation's model settings."""

    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


@dataclass(slots=True, frozen=True)
class ToolOutcome:
    """A tool call's outcome as the model gets it: text, and whether the call failed."""

    text: str
    is_error: bool = False
    # The call needed an approval that was refused (or could not be asked for).
    denied: bool = False


@dataclass(slots=True, frozen=True)
class McpServerSettings:
    """One `[mcp_servers.NAME]` table of the configuration file."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    startup_timeout_s: float = 20.0
    tool_timeout_s: float = 600.0
    # None: every tool the server lists.
    enabled_tools: tuple[str, ...] | None = None
    approval: str = "ask"  # "ask" or "auto"


def function_call_item(call_id: str, name: str, arguments: str) -> Item:
    """A `functionCall` history item (arguments: the model's raw JSON text)."""
    return {"type": "functionCall", "callId": call_id, "name": name, "arguments": arguments}


def function_call_output_item(call_id: str, output: str, is_error: bool) -> Item:
    """A `functionCallOutput` history item (output: the text sent to the model)."""
    return {"type": "functionCallOutput", "callId": call_id, "output": output, "isError": is_error}


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


class ConversationError(Exception):
    """Base of the manager's errors: a message and optional data for the client."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ConversationNotFound(ConversationError):
    """No conversation with that id is loaded or stored."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation not found: {conversation_id}", {"conversationId": conversation_id}
        )


class ConversationBusy(ConversationError):
    """A turn is running in the conversation."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation is running a turn: {conversation_id}",
            {"conversationId": conversation_id},
        )


class ConversationExists(ConversationError):
    """The client-chosen id is taken."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation already exists: {conversation_id}", {"conversationId": conversation_id}
        )


class ConversationLocked(ConversationError):
    """Another convmgr process holds the conversation open."""

    def __init__(self, conversation_id: str, holder: str | None = None) -> None:
        data: dict[str, Any] = {"conversationId": conversation_id}
        if holder:
            data["holder"] = holder
        super().__init__(
            f"conversation is open in another convmgr process: {conversation_id}", data
        )


class LeaseLost(ConversationLocked):
    """This process's lease on a conversation was taken over: it must stop writing it."""

    def __init__(self, conversation_id: str, holder: str | None = None) -> None:
        super().__init__(conversation_id, holder)
        self.message = f"this process lost its lease on the conversation: {conversation_id}"
        self.args = (self.message,)


class Overloaded(ConversationError):
    """A configured limit was reached."""


class InvalidArgument(ConversationError):
    """A parameter is well-formed but not acceptable (an unknown provider, say)."""


class StorageFailed(ConversationError):
    """The store could not do what was asked; nothing was half-written.

    `reason` is one of "disk_full", "io_error", "corrupt", "unavailable".
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"storage failed ({reason}): {detail}", {"reason": reason})
        self.reason = reason


class CommitOutcomeUnknown(StorageFailed):
    """A commit failed after it was issued and reading it back failed too: it may have landed."""
