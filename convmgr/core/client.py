"""How the core reaches the client: the interface each dialect implements."""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from convmgr.model import ToolOutcome

Decision = Literal["allow", "allowAlways", "deny"]


@dataclass(slots=True, frozen=True)
class ToolRequest:
    """A call for the client to run, or to approve."""

    conversation_id: str
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any]
    source: Literal["client", "mcp"] = "client"
    server: str | None = None


class ClientUnavailable(Exception):
    """Nobody can answer: the client's input has ended."""


class ClientChannel(Protocol):
    """The client as the turn loop sees it."""

    def can_approve(self) -> bool:
        """Whether the client said it answers approval requests."""
        ...

    def needs_approval(self, name: str) -> bool:
        """Whether a call to this client tool is approved first (the client's own rule)."""
        ...

    async def call_tool(self, request: ToolRequest) -> ToolOutcome:
        """Have the client run one of its tools; a bad or error answer is a failed outcome.

        Raises ClientUnavailable when no answer can come. Cancelling the caller
        tells the client the request is given up.
        """
        ...

    async def request_approval(self, request: ToolRequest) -> Decision:
        """Ask the client whether a call may run (only if can_approve()).

        Raises ClientUnavailable when no answer can come; an unusable answer is "deny".
        """
        ...


class NoClient:
    """A channel for a manager without a client: nothing can be asked."""

    def can_approve(self) -> bool:
        """Never."""
        return False

    def needs_approval(self, name: str) -> bool:
        """No client tool needs approval."""
        return False

    async def call_tool(self, request: ToolRequest) -> ToolOutcome:
        """Always unavailable."""
        raise ClientUnavailable("no client")

    async def request_approval(self, request: ToolRequest) -> Decision:
        """Always unavailable."""
        raise ClientUnavailable("no client")
