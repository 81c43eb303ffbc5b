"""Params and results of the lifecycle methods and notifications (PROTOCOL.md section 2).

Kept apart from the conversation methods: `initialize` needs only these, and
an editor pays for every model class built before its answer.
"""

from typing import Any, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class ClientInfo(WireModel):
    """Who the client is."""

    name: str
    version: str | None = None


class InitializeParams(WireModel):
    """`initialize` params; every field is optional."""

    protocol_version: str | None = None
    client_info: ClientInfo | None = None
    capabilities: dict[str, Any] | None = None


class ServerInfo(WireModel):
    """Name and version of this server."""

    name: Literal["convmgr"] = "convmgr"
    version: str


class ProviderInfo(WireModel):
    """A model provider the server can use."""

    name: str
    kind: str
    default_model: str


class ServerCapabilities(WireModel):
    """What this server supports beyond the base protocol."""

    framings: list[str] = Field(default_factory=lambda: ["ndjson", "lsp"])
    batches: bool = True
    cancellation: list[str] = Field(
        default_factory=lambda: ["$/cancelRequest", "notifications/cancelled"]
    )
    persistent_store: bool = False
    # 1.1: turns call tools, and the server sends these requests to the client.
    tools: bool = True
    server_requests: list[str] = Field(default_factory=lambda: ["tool/call", "approval/request"])


class InitializeResult(WireModel):
    """`initialize` result."""

    protocol_version: Literal["1"] = "1"
    server_info: ServerInfo
    capabilities: ServerCapabilities
    providers: list[ProviderInfo]


class EmptyResult(WireModel):
    """`{}`: the result of `ping` and `shutdown`."""


class CancelRequestParams(WireModel):
    """`$/cancelRequest` params (LSP)."""

    id: int | str


class CancelledNotificationParams(WireModel):
    """`notifications/cancelled` params (MCP)."""

    request_id: int | str
    reason: str | None = None
