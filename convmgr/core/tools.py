"""The tools a turn can call, and how one call runs: parsed, approved if need be, executed."""

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from convmgr.core.client import ClientChannel, ClientUnavailable, ToolRequest
from convmgr.model import ConversationSettings, ToolOutcome
from convmgr.providers.base import FunctionTool
from convmgr.tools.mcp import McpHub, McpTool

log = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 600.0
DEFAULT_MAX_TOOL_ROUNDS = 32

ABORTED = ToolOutcome("aborted", is_error=True)


@dataclass(slots=True, frozen=True)
class ToolEntry:
    """One tool as the model sees it, and where it runs."""

    function: FunctionTool
    source: Literal["client", "mcp"]
    mcp: McpTool | None = None


@dataclass(slots=True, frozen=True)
class ToolLimits:
    """The limits every turn's tools run under."""

    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS


def parse_arguments(text: str) -> tuple[dict[str, Any] | None, Any]:
    """The model's argument text as a JSON object (None when it is not one), and as shown.

    Shown: the parsed JSON value, or the raw text when it is not valid JSON.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return None, text
    return (value if isinstance(value, dict) else None), value


def mcp_servers_of(settings: ConversationSettings, hub: McpHub) -> list[str]:
    """The configured MCP servers a conversation uses (all of them unless it chose some)."""
    if settings.mcp_servers is None:
        return list(hub.servers)
    return [name for name in settings.mcp_servers if name in hub.servers]


class TurnTools:
    """The tools of one turn: the conversation's client tools and its MCP servers' tools."""

    def __init__(
        self,
        entries: dict[str, ToolEntry],
        client: ClientChannel,
        hub: McpHub | None,
        limits: ToolLimits,
        always_allowed: set[str],
    ) -> None:
        self.entries = entries
        self.client = client
        self.hub = hub
        self.limits = limits
        # Tools the client answered allowAlways for in this conversation.
        self.always_allowed = always_allowed

    def functions(self) -> list[FunctionTool]:
        """What the model is offered."""
        return [entry.function for entry in self.entries.values()]

    def entry(self, name: str) -> ToolEntry | None:
        """The tool the model named, if the conversation has it."""
        return self.entries.get(name)

    async def run(
        self,
        request: ToolRequest,
        entry: ToolEntry | None,
        started: Callable[[], None] = lambda: None,
    ) -> ToolOutcome:
        """Run one call to completion; every failure is a failed outcome for the model.

        `started` is called when the call starts running, after any approval.
        """
        if entry is None:
            return ToolOutcome(f"unknown tool: {request.name}", is_error=True)
        if entry.source == "client":
            if self.client.needs_approval(request.name):
                refused = await self._approve_unless_always(request)
                if refused is not None:
                    return refused
            started()
            return await self._run_client(request)
        assert entry.mcp is not None and self.hub is not None
        settings = self.hub.settings(entry.mcp.key or entry.mcp.server)
        if settings.approval == "ask":
            refused = await self._approve_unless_always(request)
            if refused is not None:
                return refused
        started()
        return await self.hub.call(entry.mcp, request.arguments)

    async def _approve_unless_always(self, request: ToolRequest) -> ToolOutcome | None:
        if request.name in self.always_allowed:
            return None
        return await self._approve(request)

    async def _run_client(self, request: ToolRequest) -> ToolOutcome:
        timeout = self.limits.tool_timeout_s
        with anyio.move_on_after(timeout):
            try:
                return await self.client.call_tool(request)
            except ClientUnavailable:
                return ToolOutcome("client gone: nobody can run the tool", is_error=True)
        return ToolOutcome(f"the client did not answer within {timeout:g} s", is_error=True)

    async def _approve(self, request: ToolRequest) -> ToolOutcome | None:
        """None when the call may run; otherwise the denied outcome."""
        if not self.client.can_approve():
            return ToolOutcome(
                "denied: this call needs approval and the client cannot be asked",
                is_error=True,
                denied=True,
            )
        try:
            decision = await self.client.request_approval(request)
        except ClientUnavailable:
            decision = "deny"
        if decision == "allowAlways":
            self.always_allowed.add(request.name)
        elif decision != "allow":
            return ToolOutcome("denied: the user did not allow this call", True, denied=True)
        return None


class Toolbox:
    """Where tools come from for every conversation: the client and the MCP hub."""

    def __init__(
        self, client: ClientChannel, hub: McpHub | None, limits: ToolLimits | None = None
    ) -> None:
        self.client = client
        self.hub = hub
        self.limits = limits or ToolLimits()

    def uses_tools(
        self, settings: ConversationSettings, extra_servers: Sequence[str] = ()
    ) -> bool:
        """Whether a conversation with these settings (and servers of its own) has a tool source."""
        if settings.tools:
            return True
        hub = self.hub
        return bool(hub is not None and (extra_servers or mcp_servers_of(settings, hub)))

    def unknown_servers(self, settings: ConversationSettings) -> list[str]:
        """The MCP servers a conversation names that are not configured."""
        configured = self.hub.servers if self.hub is not None else {}
        return [name for name in settings.mcp_servers or () if name not in configured]

    async def for_turn(
        self,
        settings: ConversationSettings,
        always_allowed: set[str],
        extra_servers: Sequence[str] = (),
    ) -> tuple[TurnTools, list[tuple[str, str]]]:
        """The turn's tools (MCP servers started if need be), and (server, message) failures.

        `extra_servers` are the hub's keys of the conversation's own MCP servers
        (McpHub.add_servers), used besides the configured ones it picked.
        """
        entries: dict[str, ToolEntry] = {}
        failures: list[tuple[str, str]] = []
        if self.hub is not None:
            servers = [*mcp_servers_of(settings, self.hub), *extra_servers]
            if servers:
                tools, failures = await self.hub.tools(servers)
                for tool in tools:
                    function = FunctionTool(tool.name, tool.description, tool.input_schema)
                    entries[tool.name] = ToolEntry(function, "mcp", tool)
        # A client tool named like an MCP tool wins: the client chose the name.
        for spec in settings.tools or ():
            function = FunctionTool(spec["name"], spec.get("description", ""), spec["inputSchema"])
            entries[spec["name"]] = ToolEntry(function, "client")
        return TurnTools(entries, self.client, self.hub, self.limits, always_allowed), failures
