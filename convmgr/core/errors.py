"""Errors the manager raises; the server maps each to its JSON-RPC code."""

from typing import Any


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
