"""The shape of the TOML configuration file (PROTOCOL.md section 7), as pydantic models.

Imported only when a configuration file exists, so that a server without one
does not build these schemas at start-up.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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
    request_timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=100)
    # Not in PROTOCOL.md's example: the first retry's backoff, for fast tests
    # and for servers on the same machine.
    retry_base_delay_s: float = Field(default=0.5, ge=0, le=60)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An http(s) URL with a host; the trailing slash dropped."""
        return check_base_url(value)


class ConfigFile(BaseModel):
    """The whole file."""

    model_config = _CONFIG

    default_provider: Annotated[str, StringConstraints(min_length=1)] = "echo"
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
