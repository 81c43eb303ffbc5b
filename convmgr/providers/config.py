"""The TOML configuration file: where it is, what it says, the providers it makes.

Only what every start needs is imported here. tomllib, platformdirs, the
pydantic models of the file and the HTTP providers are imported when they are
needed, so that a server without a configuration file starts as fast as it can.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convmgr.providers.base import Provider
from convmgr.providers.echo import EchoProvider
from convmgr.providers.registry import ProviderRegistry

if TYPE_CHECKING:
    from pydantic import ValidationError

    from convmgr.providers.config_model import ConfigFile, ProviderConfig

CONFIG_ENV = "CONVMGR_CONFIG"
CONFIG_FILE_NAME = "config.toml"
BUILTIN_PROVIDER = "echo"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> ConfigFile | None:
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
    return parse_config(file, data)


def parse_config(file: Path | str, data: bytes) -> ConfigFile:
    """Validate the bytes of a configuration file; ConfigError names what is wrong."""
    import tomllib

    from pydantic import ValidationError

    from convmgr.providers.config_model import ConfigFile

    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, [f"invalid TOML: {exc}"]) from None
    try:
        config = ConfigFile.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(file, _describe(exc)) from None
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
    if problems:
        raise ConfigError(file, problems)
    return config


def load_registry(path: Path | None = None) -> ProviderRegistry:
    """The built-in echo provider plus the configured ones, with the configured default.

    `path` is `--config`; None means CONVMGR_CONFIG, else config.toml in the user
    config directory (whose absence just means echo only). Raises ConfigError.
    """
    config = load_config(path)
    if config is None:
        return ProviderRegistry.echo_only()
    return registry_from_config(config)


def registry_from_config(config: ConfigFile) -> ProviderRegistry:
    """The providers a validated configuration describes (echo first)."""
    providers: dict[str, Provider] = {BUILTIN_PROVIDER: EchoProvider()}
    for name, table in config.providers.items():
        providers[name] = make_provider(name, table)
    return ProviderRegistry(providers, config.default_provider)


def make_provider(name: str, table: ProviderConfig) -> Provider:
    """The provider one `[providers.NAME]` table describes (httpx is not imported yet)."""
    from convmgr.providers.http import HttpProviderSettings

    settings = HttpProviderSettings(
        name=name,
        base_url=table.base_url,
        default_model=table.default_model,
        api_key_env=table.api_key_env,
        request_timeout_s=table.request_timeout_s,
        max_retries=table.max_retries,
        retry_base_delay_s=table.retry_base_delay_s,
    )
    if table.kind == "openai-chat":
        from convmgr.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(settings)
    from convmgr.providers.openai_responses import OpenAIResponsesProvider

    return OpenAIResponsesProvider(settings)


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
