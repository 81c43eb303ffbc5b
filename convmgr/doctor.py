"""`convmgr doctor`: what configuration, store, providers and MCP servers are in effect.

It reads the configuration file and looks at the store without changing
either (a missing store is not created). Of each provider's key it says only
whether its variable is set. With `--check` it asks each HTTP provider for
`GET {base_url}/models` and says whether it answered.
"""

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from convmgr import __version__
from convmgr.providers.config import (
    BUILTIN_PROVIDER,
    CONFIG_ENV,
    ConfigError,
    ProviderEntry,
    ProvidersConfig,
    config_path,
    load_config,
)
from convmgr.providers.http import provider_headers, redact
from convmgr.providers.urls import endpoint_url, shown_url
from convmgr.store.inspect import StoreInfo, inspect_store
from convmgr.store.location import mask_url, store_target
from convmgr.store.postgres_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from convmgr.store.sqlite_schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import httpx

CHECK_TIMEOUT_S = 5.0

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_UNUSABLE = 2


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one provider answered to GET /models."""

    ok: bool
    text: str


def doctor_command(
    config_file: Path | None,
    store_file: str | Path | None,
    *,
    check: bool,
    out: TextIO | None = None,
) -> int:
    """Print the report; 0 when all is fine, 1 when a check failed, 2 when unusable."""
    out = out or sys.stdout
    status = EXIT_OK
    out.write(f"convmgr {__version__}\n")
    config, config_ok = _config_section(out, config_file)
    if not config_ok:
        status = EXIT_UNUSABLE
    config_url = None if config is None else config.store.url
    target = store_target(store_file, config_url)
    if isinstance(target, str):
        if not _postgres_section(out, target):
            status = EXIT_UNUSABLE
    elif not _store_section(out, target):
        status = EXIT_UNUSABLE
    if config_ok:
        _providers_section(out, config)
        _mcp_section(out, config)
        if check and (config is None or not config.providers):
            out.write("checks: no HTTP provider to check\n")
        elif check and config is not None and not _check_section(out, config):
            status = max(status, EXIT_CHECK_FAILED)
    out.flush()
    return status


def _config_section(out: TextIO, config_file: Path | None) -> tuple[ProvidersConfig | None, bool]:
    """The configuration file line; the configuration and whether it can be used."""
    path, named = config_path(config_file)
    source = (
        "--config" if config_file is not None else CONFIG_ENV if named else "the default location"
    )
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        exists = "exists" if path.exists() else "does not exist"
        out.write(f"config file: {path} (from {source}), {exists}\n")
        out.write(f"  error: {exc}\n")
        return None, False
    if config is None:
        out.write(f"config file: {path} (from {source}), does not exist: the echo provider only\n")
        return None, True
    out.write(f"config file: {path} (from {source}), exists\n")
    return config, True


def _store_section(out: TextIO, path: Path) -> bool:
    """The store line; whether the store can be used."""
    info: StoreInfo = inspect_store(path)
    if not info.exists:
        out.write(f"store: {path}, does not exist yet (created on first use)\n")
        return True
    if info.problem is not None:
        out.write(f"store: {path}, exists\n  error: {info.problem}\n")
        return False
    version = info.schema_version
    state = "current" if version == SCHEMA_VERSION else f"upgraded to {SCHEMA_VERSION} on open"
    count = "" if info.conversations is None else f", {info.conversations} conversations"
    out.write(f"store: {path}, exists, schema version {version} ({state}){count}\n")
    return True


def _postgres_section(out: TextIO, url: str) -> bool:
    """The store line of a PostgreSQL store (password masked); whether it can be used."""
    from convmgr.store.postgres import inspect_postgres

    shown = mask_url(url)
    version, count, problem = inspect_postgres(url)
    if problem is not None:
        out.write(f"store: {shown} (PostgreSQL)\n  error: {problem}\n")
        return False
    if version is None:
        out.write(f"store: {shown} (PostgreSQL), no convmgr schema yet (created on first use)\n")
        return True
    state = (
        "current" if version == PG_SCHEMA_VERSION else f"upgraded to {PG_SCHEMA_VERSION} on open"
    )
    out.write(
        f"store: {shown} (PostgreSQL), schema version {version} ({state}), {count} conversations\n"
    )
    return True


def _providers_section(out: TextIO, config: ProvidersConfig | None) -> None:
    """One line per provider: kind, base URL, default model, whether its key is set."""
    default = config.default_provider if config is not None else BUILTIN_PROVIDER
    out.write(f"providers (default: {default}):\n")
    out.write(f"  {BUILTIN_PROVIDER}: built-in, model echo\n")
    for name, entry in (config.providers if config is not None else {}).items():
        settings = entry.settings
        out.write(
            f"  {name}: {entry.kind}, base_url {settings.base_url}, "
            f"default model {settings.default_model}, {_key_state(entry)}\n"
        )


def _key_state(entry: ProviderEntry) -> str:
    """Whether the provider's key variable is set (never its value)."""
    env = entry.settings.api_key_env
    if env is None:
        return "no key (api_key_env not set)"
    if os.environ.get(env, "").strip():
        return f"key variable {env} is set"
    return f"key variable {env} is NOT set"


def _mcp_section(out: TextIO, config: ProvidersConfig | None) -> None:
    """The MCP servers configured: command and approval."""
    servers = config.mcp_servers if config is not None else {}
    if not servers:
        out.write("MCP servers: none\n")
        return
    out.write("MCP servers:\n")
    for name, server in servers.items():
        command = shlex.join([server.command, *server.args])
        tools = "" if server.enabled_tools is None else f", tools {', '.join(server.enabled_tools)}"
        out.write(f"  {name}: {command}, approval {server.approval}{tools}\n")


def _check_section(out: TextIO, config: ProvidersConfig) -> bool:
    """Ask each HTTP provider for its models; whether all answered 2xx."""
    out.write(f"checks (GET {{base_url}}/models, {CHECK_TIMEOUT_S:g} s timeout):\n")
    all_ok = True
    for name, entry in config.providers.items():
        result = check_provider(entry)
        all_ok = all_ok and result.ok
        out.write(f"  {name}: {'ok' if result.ok else 'FAILED'}: {result.text}\n")
    return all_ok


def check_provider(entry: ProviderEntry, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """GET {base_url}/models with the provider's key; what came back, the key never shown."""
    import httpx

    settings = entry.settings
    # As the provider's own requests: its headers, key header and query.
    url = endpoint_url(settings.base_url, "/models")
    key = os.environ.get(settings.api_key_env, "").strip() if settings.api_key_env else ""
    headers, secrets = provider_headers(settings, key or None)
    headers["Accept"] = "application/json"
    url_shown = shown_url(url)
    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.get(url, headers=headers)
    except httpx.TimeoutException:
        return CheckResult(False, f"{url_shown}: no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        detail = str(exc) or type(exc).__name__
        return CheckResult(False, redact(f"{url_shown}: {type(exc).__name__}: {detail}", secrets))
    except ValueError as exc:
        # httpx refuses a header it cannot send (a key with odd characters).
        return CheckResult(
            False, f"{url_shown}: the request could not be made: {type(exc).__name__}"
        )
    elapsed = round((time.monotonic() - started) * 1000)
    text = f"{url_shown}: HTTP {response.status_code} {response.reason_phrase} in {elapsed} ms"
    if response.is_success:
        count = _model_count(response)
        if count is not None:
            text += f", {count} models"
        return CheckResult(True, text)
    message = _error_message(response)
    if message:
        text += f": {message}"
    return CheckResult(False, redact(text, secrets))


def _model_count(response: "httpx.Response") -> int | None:
    """How many models an OpenAI-style list names, if it is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return len(data) if isinstance(data, list) else None


def _error_message(response: "httpx.Response") -> str:
    """The error message of an error answer, cut short."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:200]
    return json.dumps(error)[:200]
