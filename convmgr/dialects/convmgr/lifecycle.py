"""Params and results of the lifecycle methods and notifications (docs/protocol.md §2).

Kept apart from the conversation methods: `initialize` needs only these, and
an editor pays for every model class built before its answer.
"""

from typing import Any, Literal

from pydantic import Field

from convmgr.dialects.convmgr.base import WireModel


class ClientInfo(WireModel):
    """Who the client is (informational)."""

    name: str = Field(description="The client's name.")
    version: str | None = Field(default=None, description="The client's version.")


class InitializeParams(WireModel):
    """`initialize` params; every field is optional."""

    protocol_version: str | None = Field(
        default=None,
        description='The protocol version the client speaks (`"1"`); informational.',
    )
    client_info: ClientInfo | None = Field(default=None, description="Who the client is.")
    capabilities: dict[str, Any] | None = Field(
        default=None,
        description=(
            "What the client can do. Defined: `approvals` (1.1): true when the client answers "
            "`approval/request`; without it, calls that need approval are denied. Unknown "
            "keys are ignored."
        ),
    )


class ServerInfo(WireModel):
    """Name and version of this server."""

    name: Literal["convmgr"] = Field(default="convmgr", description='Always `"convmgr"`.')
    version: str = Field(description="The convmgr release, e.g. `1.1.0`.")


class ProviderInfo(WireModel):
    """A model provider the server can use."""

    name: str = Field(
        description="What `newConversation`'s `provider` names: `echo`, or a `[providers.NAME]`."
    )
    kind: str = Field(description="`echo`, `openai-chat` or `openai-responses`.")
    default_model: str = Field(description="The model a conversation gets when it names none.")


class ServerCapabilities(WireModel):
    """What this server supports beyond the base protocol."""

    framings: list[str] = Field(
        default_factory=lambda: ["ndjson", "lsp"],
        description="The framings it reads and writes: `ndjson` and `lsp` (`Content-Length`).",
    )
    batches: bool = Field(default=True, description="Whether JSON-RPC batches are accepted.")
    cancellation: list[str] = Field(
        default_factory=lambda: ["$/cancelRequest", "notifications/cancelled"],
        description="The notifications that cancel a request: LSP's and MCP's.",
    )
    persistent_store: bool = Field(
        default=False,
        description="True when conversations are kept in a store file; false with `--no-store`.",
    )
    tools: bool = Field(
        default=True,
        description="1.1: turns can call tools (client tools and configured MCP servers).",
    )
    server_requests: list[str] = Field(
        default_factory=lambda: ["tool/call", "approval/request"],
        description="1.1: the requests this server may send the client (ids `s1`, `s2`, ...).",
    )


class InitializeResult(WireModel):
    """`initialize` result."""

    protocol_version: Literal["1"] = Field(
        default="1",
        description=(
            'The protocol version: `"1"` (1.1 only adds to it; `serverInfo.version` tells '
            "the release)."
        ),
    )
    server_info: ServerInfo = Field(description="Name and version of the server.")
    capabilities: ServerCapabilities = Field(description="What the server supports.")
    providers: list[ProviderInfo] = Field(
        description="The providers conversations can use: `echo`, then the configured ones."
    )


class EmptyResult(WireModel):
    """`{}`: the result of `ping` and `shutdown`."""


class CancelRequestParams(WireModel):
    """`$/cancelRequest` params (LSP); the server sends it too, for its own requests (1.1)."""

    id: int | str = Field(
        description=(
            "The id of the request to cancel. From the server: the id (`s1`, ...) of a "
            "`tool/call` or `approval/request` it gave up; do not answer it."
        )
    )


class CancelledNotificationParams(WireModel):
    """`notifications/cancelled` params (MCP)."""

    request_id: int | str = Field(description="The id of the request to cancel.")
    reason: str | None = Field(default=None, description="Why, for the log.")
