"""MCP servers as tool sources, through the official MCP SDK's client (imported on first need)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from convmgr.model import McpServerSettings, ToolOutcome


@dataclass(frozen=True, slots=True)
class McpTool:
    """A tool one MCP server offers, under the name the model sees."""

    server: str
    # The server's own name for it.
    tool: str
    # SERVER__TOOL cut to [A-Za-z0-9_-] and 64 characters.
    name: str
    description: str
    input_schema: dict[str, Any]


class McpHub:
    """The configured MCP servers: each started on first need and kept for the process."""

    def __init__(self, servers: Mapping[str, McpServerSettings]) -> None:
        self.servers = dict(servers)

    async def __aenter__(self) -> "McpHub":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def tools(self, servers: Sequence[str]) -> tuple[list[McpTool], list[tuple[str, str]]]:
        """The tools of these servers, starting any not running; and (server, message) failures."""
        raise NotImplementedError

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        """Call a tool; a failure (the server's or its death) is a failed outcome, not an error."""
        raise NotImplementedError
