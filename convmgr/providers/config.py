"""The TOML configuration file: where it is, what it says, the providers it makes.

Only what every start needs is imported here: tomllib and platformdirs when
they are needed, pydantic only when a file is not plainly valid (to explain
what is wrong), httpx on a provider's first turn.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from convmgr.model import McpServerSettings
from convmgr.providers.base import Provider
from convmgr.providers.echo import EchoProvider
from convmgr.providers.headers import (
    AUTHORIZATION,
    ENV_NAME,
    check_header_name,
    check_headers,
    check_id,
    expand,
)
from convmgr.providers.http import HttpProviderSettings
from convmgr.providers.registry import ProviderRegistry
from convmgr.providers.sse import DEFAULT_MAX_EVENT_BYTES
from convmgr.providers.urls import check_base_url

if TYPE_CHECKING:
    from pydantic import ValidationError

CONFIG_ENV = "CONVMGR_CONFIG"
CONFIG_FILE_NAME = "config.toml"
BUILTIN_PROVIDER = "echo"

KINDS = ("openai-chat", "openai-responses")
# A model's context window in tokens: well above any model's, below JSON's exact integers.
MAX_CONTEXT_WINDOW = 1 << 40
_PROVIDER_KEYS = frozenset(
    {
        "kind",
        "base_url",
        "default_model",
        "api_key_env",
        "api_key_header",
        "organization",
        "project",
        "headers",
        "request_timeout_s",
        "max_retries",
        "retry_base_delay_s",
        "context_window",
    }
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_MCP_KEYS = frozenset(
    {
        "command",
        "args",
        "env",
        "startup_timeout_s",
        "tool_timeout_s",
        "enabled_tools",
        "approval",
    }
)
_TOP_KEYS = frozenset({"default_provider", "providers", "mcp_servers", "max_tool_rounds"})
DEFAULT_MAX_TOOL_ROUNDS = 32


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid.

    The message names the file, the table and the field, and is one line.
    """

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("; ".join(f"{self.path}: {problem}" for problem in self.problems))


def config_path(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The file to read and whether it was named (by argument or CONVMGR_CONFIG)."""
    if path is not None:
        return path, True
    named = (os.environ if env is None else env).get(CONFIG_ENV)
    if named:
        return Path(named), True
    from platformdirs import user_config_dir

    return Path(user_config_dir("convmgr")) / CONFIG_FILE_NAME, False


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One validated `[providers.NAME]` table: its kind and its settings."""

    kind: str
    settings: HttpProviderSettings


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The `[store]` table: where conversations are stored, and the lease time-out."""

    url: str | None = None
    lease_ttl_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ProvidersConfig:
    """A validated configuration file."""

    default_provider: str = BUILTIN_PROVIDER
    providers: dict[str, ProviderEntry] = field(default_factory=dict)
    mcp_servers: dict[str, McpServerSettings] = field(default_factory=dict)
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    store: StoreSettings = field(default_factory=StoreSettings)


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> ProvidersConfig | None:
    """The validated configuration, or None when the default file does not exist.

    Raises ConfigError when a named file is missing, or any file is unreadable or invalid.
    """
    file, named = config_path(path, env)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        if not named:
            return None
        raise ConfigError(file, ["no such file"]) from None
    except OSError as exc:
        raise ConfigError(file, [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_config(file, data, env)


def parse_config(
    file: Path | str, data: bytes, env: Mapping[str, str] | None = None
) -> ProvidersConfig:
    """Validate the bytes of a configuration file; ConfigError names what is wrong.

    `${NAME}` in header values is expanded from `env` (os.environ when None).
    """
    import tomllib

    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, [f"invalid TOML: {exc}"]) from None
    # Importing pydantic and building the models is a large part of start-up
    # (docs/architecture.md): a file that is plainly valid is taken without
    # them. The pydantic models stay the definition (and explain every error);
    # tests check that the fast path never accepts what they refuse, nor reads
    # anything differently.
    config = fast_config(table)
    if config is None:
        config = validated_config(file, table)
    problems = []
    if BUILTIN_PROVIDER in config.providers:
        problems.append(
            f"[providers] {BUILTIN_PROVIDER}: the name is taken by the built-in provider"
        )
    known = [BUILTIN_PROVIDER, *config.providers]
    if config.default_provider not in known:
        problems.append(
            f"default_provider: unknown provider {config.default_provider!r} "
            f"(configured: {', '.join(known)})"
        )
    config = _expanded(config, os.environ if env is None else env, problems)
    if problems:
        raise ConfigError(file, problems)
    return config


def _expanded(
    config: ProvidersConfig, env: Mapping[str, str], problems: list[str]
) -> ProvidersConfig:
    """The configuration with its header values' `${NAME}` expanded; problems for unset ones."""
    providers = {}
    for name, entry in config.providers.items():
        headers = []
        for header, value in entry.settings.headers:
            try:
                headers.append((header, expand(value, env)))
            except ValueError as exc:
                problems.append(f"[providers.{_key(name)}.headers] {_key(header)}: {exc}")
        settings = replace(entry.settings, headers=tuple(headers))
        providers[name] = ProviderEntry(entry.kind, settings)
    return replace(config, providers=providers)


def validated_config(file: Path | str, table: dict[str, Any]) -> ProvidersConfig:
    """The configuration as the pydantic models read it; ConfigError lists every problem."""
    from pydantic import ValidationError

    from convmgr.providers.config_model import ConfigFile

    try:
        model = ConfigFile.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(file, _describe(exc)) from None
    providers = {
        name: ProviderEntry(
            kind=entry.kind,
            settings=HttpProviderSettings(
                name=name,
                base_url=entry.base_url,
                default_model=entry.default_model,
                api_key_env=entry.api_key_env,
                api_key_header=entry.api_key_header,
                organization=entry.organization,
                project=entry.project,
                headers=tuple(entry.headers.items()),
                request_timeout_s=entry.request_timeout_s,
                max_retries=entry.max_retries,
                retry_base_delay_s=entry.retry_base_delay_s,
                context_window=entry.context_window,
            ),
        )
        for name, entry in model.providers.items()
    }
    servers = {name: entry.settings(name) for name, entry in model.mcp_servers.items()}
    store = StoreSettings()
    if model.store is not None:
        store = StoreSettings(model.store.url, model.store.lease_ttl_s)
    return ProvidersConfig(model.default_provider, providers, servers, model.max_tool_rounds, store)


def fast_config(table: dict[str, Any]) -> ProvidersConfig | None:
    """The configuration if it is plainly valid, else None (pydantic must judge and explain).

    Accepts a subset of what config_model.ConfigFile accepts, read the same way.
    """
    if not table.keys() <= _TOP_KEYS:
        return None  # [store] among them: rare enough to be read by pydantic
    default = table.get("default_provider", BUILTIN_PROVIDER)
    tables = table.get("providers", {})
    server_tables = table.get("mcp_servers", {})
    rounds = table.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)
    if (
        not isinstance(default, str)
        or not default
        or not isinstance(tables, dict)
        or not isinstance(server_tables, dict)
        or type(rounds) is not int
        or rounds < 1
    ):
        return None
    providers = {}
    for name, entry in tables.items():
        settings = _fast_settings(name, entry)
        if settings is None:
            return None
        providers[name] = ProviderEntry(entry["kind"], settings)
    servers = {}
    for name, entry in server_tables.items():
        server = _fast_mcp_server(name, entry)
        if server is None:
            return None
        servers[name] = server
    return ProvidersConfig(default, providers, servers, rounds)


def _fast_settings(name: str, entry: object) -> HttpProviderSettings | None:
    """One provider table's settings if they are plainly valid, else None."""
    if not isinstance(entry, dict) or not entry.keys() <= _PROVIDER_KEYS:
        return None
    kind = entry.get("kind")
    base_url = entry.get("base_url")
    model = entry.get("default_model")
    env = entry.get("api_key_env")
    key_header = entry.get("api_key_header", AUTHORIZATION)
    organization = entry.get("organization")
    project = entry.get("project")
    headers = entry.get("headers", {})
    timeout = entry.get("request_timeout_s", 600.0)
    retries = entry.get("max_retries", 4)
    delay = entry.get("retry_base_delay_s", 0.5)
    window = entry.get("context_window")
    if (
        kind not in KINDS
        or not isinstance(base_url, str)
        or not isinstance(model, str)
        or not model
        or not (env is None or (isinstance(env, str) and ENV_NAME.fullmatch(env)))
        or not isinstance(key_header, str)
        or not (organization is None or isinstance(organization, str))
        or not (project is None or isinstance(project, str))
        or not (isinstance(headers, dict) and _is_str_list([*headers, *headers.values()]))
        or not (_is_number(timeout) and timeout > 0)
        or not (type(retries) is int and 0 <= retries <= 100)
        or not (_is_number(delay) and 0 <= delay <= 60)
        or not (window is None or (type(window) is int and 1 <= window <= MAX_CONTEXT_WINDOW))
    ):
        return None
    try:
        base_url = check_base_url(base_url)
        check_header_name(key_header)
        for value in (organization, project):
            if value is not None:
                check_id(value)
        extra = check_headers(
            headers,
            api_key_env=env,
            api_key_header=key_header,
            organization=organization,
            project=project,
        )
    except ValueError:
        return None
    return HttpProviderSettings(
        name=name,
        base_url=base_url,
        default_model=model,
        api_key_env=env,
        api_key_header=key_header,
        organization=organization,
        project=project,
        headers=extra,
        request_timeout_s=float(timeout),
        max_retries=retries,
        retry_base_delay_s=float(delay),
        context_window=window,
    )


def _fast_mcp_server(name: str, entry: object) -> McpServerSettings | None:
    """One `[mcp_servers.NAME]` table's settings if they are plainly valid, else None."""
    # A server name has the shape of a TOML bare key: [A-Za-z0-9_-]+.
    if (
        not isinstance(entry, dict)
        or not entry.keys() <= _MCP_KEYS
        or not _BARE_KEY.fullmatch(name)
    ):
        return None
    command = entry.get("command")
    args = entry.get("args", [])
    env = entry.get("env", {})
    startup = entry.get("startup_timeout_s", 20.0)
    tool = entry.get("tool_timeout_s", 600.0)
    enabled = entry.get("enabled_tools")
    approval = entry.get("approval", "ask")
    if (
        not isinstance(command, str)
        or not command
        or not _is_str_list(args)
        or not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values()))
        or not (_is_number(startup) and startup > 0)
        or not (_is_number(tool) and tool > 0)
        or not (enabled is None or _is_str_list(enabled))
        or approval not in ("ask", "auto")
    ):
        return None
    return McpServerSettings(
        name=name,
        command=command,
        args=tuple(args),
        env=tuple(env.items()),
        startup_timeout_s=float(startup),
        tool_timeout_s=float(tool),
        enabled_tools=None if enabled is None else tuple(enabled),
        approval=approval,
    )


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    """A list of strings."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float, not a bool (which pydantic would refuse for a float)."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def load_registry(
    path: Path | None = None, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> ProviderRegistry:
    """The built-in echo provider plus the configured ones, with the configured default.

    `path` is `--config`; None means CONVMGR_CONFIG, else config.toml in the user
    config directory (whose absence just means echo only). `max_event_bytes` is
    the server's --max-message-bytes: a provider's larger event fails the turn.
    Raises ConfigError.
    """
    config = load_config(path)
    if config is None:
        return ProviderRegistry.echo_only()
    return registry_from_config(config, max_event_bytes=max_event_bytes)


def registry_from_config(
    config: ProvidersConfig, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> ProviderRegistry:
    """The providers a validated configuration describes (echo first)."""
    providers: dict[str, Provider] = {BUILTIN_PROVIDER: EchoProvider()}
    for name, entry in config.providers.items():
        settings = replace(entry.settings, max_event_bytes=max_event_bytes)
        providers[name] = make_provider(ProviderEntry(entry.kind, settings))
    return ProviderRegistry(providers, config.default_provider)


def make_provider(entry: ProviderEntry) -> Provider:
    """The provider one `[providers.NAME]` table describes (httpx is not imported yet)."""
    if entry.kind == "openai-chat":
        from convmgr.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(entry.settings)
    from convmgr.providers.openai_responses import OpenAIResponsesProvider

    return OpenAIResponsesProvider(entry.settings)


def _describe(error: ValidationError) -> list[str]:
    """Each validation error as `[table] field: problem` (never quoting the value given)."""
    return [_describe_one(detail) for detail in error.errors(include_url=False)]


def _describe_one(detail: Any) -> str:
    """One pydantic error; its `input` is left out, as it could be a secret."""
    loc = [str(part) for part in detail["loc"]]
    kind = detail["type"]
    message = str(detail["msg"])
    if kind == "missing":
        problem = "field required"
    elif kind == "extra_forbidden":
        problem = "unknown field"
        if loc and loc[-1] in ("api_key", "key", "token"):
            problem += " (put the key in an environment variable and name it with api_key_env)"
    elif kind in ("dict_type", "model_type"):
        problem = "must be a table"
    elif kind == "string_pattern_mismatch" and loc and loc[-1] == "api_key_env":
        problem = "must be the name of an environment variable"
    else:
        message = message.removeprefix("Value error, ")
        problem = message[:1].lower() + message[1:]
    if not loc:
        return problem
    field = _key(loc[-1])
    if len(loc) == 1:
        return f"{field}: {problem}"
    return f"[{'.'.join(_key(part) for part in loc[:-1])}] {field}: {problem}"


def _key(part: str) -> str:
    """A TOML key as written in a file (quoted unless bare)."""
    return part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
