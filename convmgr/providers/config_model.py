"""The shape of the TOML configuration file (README; docs/protocol.md §14), as pydantic models.

Imported only when a configuration file exists, so that a server without one
does not build these schemas at start-up.
"""

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from convmgr.model import McpServerSettings
from convmgr.providers.headers import AUTHORIZATION, check_header_name, check_headers, check_id
from convmgr.providers.urls import check_base_url

# Strict about unknown keys: a misspelt `max_retires` must be an error, not a
# silently ignored setting.
_CONFIG = ConfigDict(extra="forbid", frozen=True)

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ProviderConfig(BaseModel):
    """One `[providers.NAME]` table."""

    model_config = _CONFIG

    kind: Literal["openai-chat", "openai-responses"]
    base_url: str
    default_model: Annotated[str, StringConstraints(min_length=1)]
    api_key_env: EnvName | None = None
    # Authorization carries `Bearer KEY`; any other header the key alone (Azure's `api-key`).
    api_key_header: str = AUTHORIZATION
    organization: str | None = None
    project: str | None = None
    request_timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=100)
    # Not in the README's example files: the first retry's backoff, for fast tests
    # and for servers on the same machine.
    retry_base_delay_s: float = Field(default=0.5, ge=0, le=60)
    # The model's context window in tokens, when known: ACP clients are told how
    # full it is (`usage_update`).
    context_window: int | None = Field(default=None, ge=1, le=1 << 40, strict=True)
    # Last: its validator reads the keys above (fields are validated in order).
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An http(s) URL with a host; the trailing slash dropped, a query kept."""
        return check_base_url(value)

    @field_validator("api_key_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        """A header name convmgr may send."""
        return check_header_name(value)

    @field_validator("organization", "project")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        """An id for the OpenAI-Organization or OpenAI-Project header."""
        return None if value is None else check_id(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """Names convmgr may send, each once; values of printable ASCII and `${NAME}`."""
        check_headers(
            value,
            api_key_env=info.data.get("api_key_env"),
            api_key_header=info.data.get("api_key_header", AUTHORIZATION),
            organization=info.data.get("organization"),
            project=info.data.get("project"),
        )
        return value


# docs/protocol.md §14: MCP server names are part of the tool names the model sees.
SERVER_NAME = re.compile(r"[A-Za-z0-9_-]+")


class McpServerConfig(BaseModel):
    """One `[mcp_servers.NAME]` table (docs/protocol.md §14)."""

    model_config = _CONFIG

    command: Annotated[str, StringConstraints(min_length=1)]
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # Strict: `true` is no number of seconds (an integer still is).
    startup_timeout_s: float = Field(default=20.0, gt=0, strict=True)
    tool_timeout_s: float = Field(default=600.0, gt=0, strict=True)
    # None: every tool the server lists.
    enabled_tools: list[str] | None = None
    approval: Literal["ask", "auto"] = "ask"

    def settings(self, name: str) -> McpServerSettings:
        """The settings this table gives the server of that name."""
        return McpServerSettings(
            name=name,
            command=self.command,
            args=tuple(self.args),
            env=tuple(self.env.items()),
            startup_timeout_s=self.startup_timeout_s,
            tool_timeout_s=self.tool_timeout_s,
            enabled_tools=None if self.enabled_tools is None else tuple(self.enabled_tools),
            approval=self.approval,
        )


class StoreConfig(BaseModel):
    """The `[store]` table."""

    model_config = _CONFIG

    # A PostgreSQL URL (postgresql://user@host/db) or a SQLite file's path.
    url: Annotated[str, StringConstraints(min_length=1)] | None = None
    # Seconds without a heartbeat after which another process takes a lease over.
    lease_ttl_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)


class ConfigFile(BaseModel):
    """The whole file."""

    model_config = _CONFIG

    default_provider: Annotated[str, StringConstraints(min_length=1)] = "echo"
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    # Model calls per turn (docs/protocol.md §14); past it the turn fails.
    max_tool_rounds: int = Field(default=32, ge=1, strict=True)
    store: StoreConfig | None = None

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, value: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        """Names the model can see inside tool names: [A-Za-z0-9_-]+."""
        bad = [name for name in value if not SERVER_NAME.fullmatch(name)]
        if bad:
            raise ValueError(
                f"server name {bad[0]!r} must be letters, digits, '_' or '-' ([A-Za-z0-9_-]+)"
            )
        return value
