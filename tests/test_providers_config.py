"""The provider configuration file: where it is looked for, validation, the registry it makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convmgr.providers.config import (
    ConfigError,
    config_path,
    fast_config,
    load_registry,
    parse_config,
    validated_config,
)
from convmgr.providers.http import OpenAICompatibleProvider
from convmgr.providers.openai_chat import OpenAIChatProvider
from convmgr.providers.openai_responses import OpenAIResponsesProvider

FULL = """
default_provider = "local"

[providers.local]
kind = "openai-chat"
base_url = "http://127.0.0.1:11434/v1/"
api_key_env = "LOCAL_API_KEY"
default_model = "llama3.2"
request_timeout_s = 60
max_retries = 2

[providers.openai]
kind = "openai-responses"
base_url = "https://api.openai.com/v1"
default_model = "gpt-4.1-mini"
"""

# What real accounts need: a query in base_url, api_key_header, extra headers
# (with a variable), organization and project.
ACCOUNTS = """
[providers.azure]
kind = "openai-chat"
base_url = "https://my-resource.openai.azure.com/openai/deployments/gpt-4o/?api-version=2024-10-21"
api_key_env = "AZURE_OPENAI_API_KEY"
api_key_header = "api-key"
default_model = "gpt-4o"

[providers.openrouter]
kind = "openai-chat"
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_API_KEY"
default_model = "openai/gpt-4.1-mini"
headers = { "HTTP-Referer" = "https://example.org/my-app", "X-Title" = "My app" }

[providers.openai]
kind = "openai-responses"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
organization = "org-abc123"
project = "proj_abc123"
default_model = "gpt-4.1-mini"

[providers.gateway]
kind = "openai-responses"
base_url = "https://gateway.example/v1"
default_model = "m"
headers = { Authorization = "Bearer ${GATEWAY_TOKEN}", "X-Team" = "team-${TEAM}-prod" }
"""
ACCOUNTS_ENV = {"GATEWAY_TOKEN": "gt-123456789", "TEAM": " blue\n"}


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user config directory at an empty place and unset CONVMGR_CONFIG."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("CONVMGR_CONFIG", raising=False)
    return home


def write(tmp_path: Path, text: str) -> Path:
    """A config.toml with that text."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problem(tmp_path: Path, text: str) -> str:
    """The ConfigError message for a file with that text."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message.replace(f"{path}: ", "config.toml: ")


def test_no_file_anywhere_means_echo_only(no_user_config: Path) -> None:
    path, named = config_path()
    assert path == no_user_config / "convmgr" / "config.toml"
    assert not named
    registry = load_registry(None)
    assert [p.name for p in registry.all()] == ["echo"]
    assert registry.default == "echo"


def test_the_user_config_file_is_read(no_user_config: Path) -> None:
    path = no_user_config / "convmgr" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(FULL)
    assert load_registry(None).default == "local"


def test_convmgr_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, FULL)
    monkeypatch.setenv("CONVMGR_CONFIG", str(path))
    assert load_registry(None).default == "local"
    # An explicit path wins over the variable.
    other = tmp_path / "other.toml"
    other.write_text('default_provider = "echo"\n')
    assert load_registry(other).default == "echo"


def test_a_named_file_that_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file$"):
        load_registry(missing)
    monkeypatch.setenv("CONVMGR_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file$"):
        load_registry(None)


def test_an_unreadable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_registry(tmp_path)


def test_the_registry_of_a_full_file(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, FULL))
    assert [p.name for p in registry.all()] == ["echo", "local", "openai"]
    assert registry.default == "local"
    local = registry.get("local")
    assert isinstance(local, OpenAIChatProvider)
    assert (local.kind, local.default_model, local.needs_history) == (
        "openai-chat",
        "llama3.2",
        True,
    )
    assert local.settings.base_url == "http://127.0.0.1:11434/v1"
    assert local.settings.api_key_env == "LOCAL_API_KEY"
    assert local.settings.request_timeout_s == 60
    assert local.settings.max_retries == 2
    remote = registry.get("openai")
    assert isinstance(remote, OpenAIResponsesProvider)
    assert isinstance(remote, OpenAICompatibleProvider)
    assert remote.settings.api_key_env is None
    assert remote.settings.max_retries == 4
    assert remote.settings.request_timeout_s == 600


def test_an_empty_file_is_echo_only(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, ""))
    assert [p.name for p in registry.all()] == ["echo"]


PROVIDER = '[providers.p]\nkind = "openai-chat"\ndefault_model = "m"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[providers.local]\nkind = "openai-chat"\ndefault_model = "m"\n',
            "config.toml: [providers.local] base_url: field required",
        ),
        (
            '[providers.local]\nkind = "openai-chat"\nbase_url = "http://h"\n'
            'default_model = "m"\nmax_retires = 3\n',
            "config.toml: [providers.local] max_retires: unknown field",
        ),
        (
            '[providers.local]\nkind = "anthropic"\nbase_url = "http://h"\ndefault_model = "m"\n',
            "config.toml: [providers.local] kind: input should be 'openai-chat' or "
            "'openai-responses'",
        ),
        (
            '[providers.local]\nkind = "openai-chat"\nbase_url = "ftp://h"\ndefault_model = "m"\n',
            "config.toml: [providers.local] base_url: must be an http:// or https:// URL",
        ),
        (
            '[providers.local]\nkind = "openai-chat"\nbase_url = "http://h"\n'
            'default_model = "m"\nrequest_timeout_s = 0\n',
            "config.toml: [providers.local] request_timeout_s: input should be greater than 0",
        ),
        (
            '[providers.local]\nkind = "openai-chat"\nbase_url = "http://h"\n'
            'default_model = "m"\napi_key_env = "MY KEY"\n',
            "config.toml: [providers.local] api_key_env: must be the name of an environment "
            "variable",
        ),
        (
            '[providers."my local"]\nkind = "openai-chat"\nbase_url = "http://h"\n',
            'config.toml: [providers."my local"] default_model: field required',
        ),
        (
            'providers = "none"\n',
            "config.toml: providers: must be a table",
        ),
        (
            "[providers]\nlocal = 3\n",
            "config.toml: [providers] local: must be a table",
        ),
        (
            'default_providr = "echo"\n',
            "config.toml: default_providr: unknown field",
        ),
        (
            'default_provider = "local"\n',
            "config.toml: default_provider: unknown provider 'local' (configured: echo)",
        ),
        (
            '[providers.echo]\nkind = "openai-chat"\nbase_url = "http://h"\ndefault_model = "m"\n',
            "config.toml: [providers] echo: the name is taken by the built-in provider",
        ),
        (
            PROVIDER + 'base_url = "http://h/v1#top"\n',
            "config.toml: [providers.p] base_url: must not have a fragment",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = ["X-A"]\n',
            "config.toml: [providers.p] headers: must be a table",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = 1 }\n',
            "config.toml: [providers.p.headers] X-A: input should be a valid string",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X A" = "v" }\n',
            "config.toml: [providers.p] headers: 'X A' is not a header name "
            "(letters, digits and !#$%&'*+-.^_`|~)",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "content-type" = "text/plain" }\n',
            "config.toml: [providers.p] headers: 'content-type' is a header convmgr sets itself",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = "1", "x-a" = "2" }\n',
            "config.toml: [providers.p] headers: 'x-a' is given twice (header names ignore case)",
        ),
        (
            PROVIDER + 'base_url = "http://h"\napi_key_env = "K"\napi_key_header = "api-key"\n'
            'headers = { "API-Key" = "v" }\n',
            "config.toml: [providers.p] headers: 'API-Key' is already sent for the key of "
            "api_key_env (api_key_header)",
        ),
        (
            PROVIDER
            + 'base_url = "http://h"\nproject = "p1"\nheaders = { "OpenAI-Project" = "v" }\n',
            "config.toml: [providers.p] headers: 'OpenAI-Project' is already sent for project",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = "line\\nbreak" }\n',
            "config.toml: [providers.p] headers: the value of 'X-A' must be printable ASCII on "
            "one line",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = "${MY VAR}" }\n',
            "config.toml: [providers.p] headers: the value of 'X-A' has a ${...} that does not "
            "hold the name of an environment variable",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = "${MY_VAR" }\n',
            "config.toml: [providers.p] headers: the value of 'X-A' has a ${ without its closing }",
        ),
        (
            PROVIDER + 'base_url = "http://h"\napi_key_header = "Host"\n',
            "config.toml: [providers.p] api_key_header: 'Host' is a header convmgr sets itself",
        ),
        (
            PROVIDER + 'base_url = "http://h"\norganization = "my org"\n',
            "config.toml: [providers.p] organization: must be printable ASCII without spaces",
        ),
        (
            PROVIDER + 'base_url = "http://h"\nheaders = { "X-Token" = "${CONVMGR_UNSET_VAR}" }\n',
            "config.toml: [providers.p.headers] X-Token: the environment variable "
            "CONVMGR_UNSET_VAR is not set",
        ),
    ],
)
def test_errors_name_the_file_the_table_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problem(tmp_path, text) == expected


def test_header_values_are_never_quoted(tmp_path: Path) -> None:
    message = problem(
        tmp_path,
        PROVIDER + 'base_url = "http://h"\nheaders = { "X-A" = "sk-secret\\u00e9", "X-B" = 1 }\n',
    )
    assert "sk-secret" not in message


def test_header_variables_are_expanded_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ACCOUNTS_ENV.items():
        monkeypatch.setenv(name, value)
    registry = load_registry(write(tmp_path, ACCOUNTS))
    gateway = registry.get("gateway")
    assert isinstance(gateway, OpenAICompatibleProvider)
    # The variable's value stripped, the text around it kept.
    assert gateway.settings.headers == (
        ("Authorization", "Bearer gt-123456789"),
        ("X-Team", "team-blue-prod"),
    )
    # Read once: a change afterwards is not seen.
    monkeypatch.setenv("GATEWAY_TOKEN", "other")
    assert gateway.settings.headers[0] == ("Authorization", "Bearer gt-123456789")


def test_every_unset_variable_is_reported(tmp_path: Path) -> None:
    message = problem(tmp_path, ACCOUNTS)
    assert message == (
        "config.toml: [providers.gateway.headers] Authorization: the environment variable "
        "GATEWAY_TOKEN is not set; config.toml: [providers.gateway.headers] X-Team: the "
        "environment variable TEAM is not set"
    )


def test_a_variable_a_header_cannot_carry_is_refused_without_being_quoted() -> None:
    env = {**ACCOUNTS_ENV, "GATEWAY_TOKEN": "gt-1234\r\nX-Evil: 1"}
    with pytest.raises(ConfigError) as caught:
        parse_config("config.toml", ACCOUNTS.encode(), env)
    assert str(caught.value) == (
        "config.toml: [providers.gateway.headers] Authorization: the environment variable "
        "GATEWAY_TOKEN holds characters an HTTP header cannot carry"
    )


def test_the_settings_real_accounts_need(tmp_path: Path) -> None:
    config = parse_config("config.toml", ACCOUNTS.encode(), ACCOUNTS_ENV)
    azure = config.providers["azure"].settings
    # The path's trailing slash dropped, the query kept.
    assert azure.base_url == (
        "https://my-resource.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21"
    )
    assert (azure.api_key_header, azure.headers) == ("api-key", ())
    openrouter = config.providers["openrouter"].settings
    assert openrouter.api_key_header == "Authorization"
    assert openrouter.headers == (
        ("HTTP-Referer", "https://example.org/my-app"),
        ("X-Title", "My app"),
    )
    openai = config.providers["openai"].settings
    assert (openai.organization, openai.project) == ("org-abc123", "proj_abc123")
    assert (azure.organization, azure.project) == (None, None)


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("http://h/v1", "http://h/v1/chat/completions"),
        ("http://h/v1/", "http://h/v1/chat/completions"),
        ("http://h/d/?api-version=1", "http://h/d/chat/completions?api-version=1"),
        ("http://h?a=1/&b=2/", "http://h/chat/completions?a=1/&b=2/"),
        ("http://h/v1?", "http://h/v1/chat/completions"),
    ],
)
def test_the_endpoint_goes_before_the_query(tmp_path: Path, base_url: str, endpoint: str) -> None:
    path = write(tmp_path, PROVIDER + f'base_url = "{base_url}"\n')
    provider = load_registry(path).get("p")
    assert isinstance(provider, OpenAIChatProvider)
    assert provider._url == endpoint


def test_the_readme_examples_are_valid_and_take_the_fast_path() -> None:
    import re
    import tomllib

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    providers = readme[readme.index("## Providers") : readme.index("## Layout")]
    blocks = re.findall(r"```toml\n(.*?)```", providers, re.S)
    assert len(blocks) >= 6
    env = {"GATEWAY_TOKEN": "gt-123456789"}
    for block in blocks:
        fast = fast_config(tomllib.loads(block))
        assert fast is not None, block
        assert (
            parse_config("README.md", block.encode(), env).providers.keys() == fast.providers.keys()
        )


def test_every_error_is_reported(tmp_path: Path) -> None:
    message = problem(tmp_path, "[providers.a]\n[providers.b]\nkind = 1\n")
    assert message.count("config.toml: ") == 6
    assert "[providers.a] kind: field required" in message
    assert "[providers.b] base_url: field required" in message


def test_an_inline_key_is_refused_without_being_quoted(tmp_path: Path) -> None:
    message = problem(
        tmp_path,
        '[providers.x]\nkind = "openai-chat"\nbase_url = "http://h"\ndefault_model = "m"\n'
        'api_key = "sk-very-secret"\n',
    )
    assert message == (
        "config.toml: [providers.x] api_key: unknown field "
        "(put the key in an environment variable and name it with api_key_env)"
    )


def test_invalid_toml(tmp_path: Path) -> None:
    message = problem(tmp_path, "[providers.local\n")
    assert message.startswith("config.toml: invalid TOML: ")
    assert "line 1" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'default_provider = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_registry(path)


def test_loading_a_configuration_does_not_import_httpx(tmp_path: Path) -> None:
    # Start-up time: httpx (~85 ms) is imported on the first turn, not before.
    path = write(tmp_path, FULL)
    code = (
        "import sys; from pathlib import Path;"
        "from convmgr.providers.config import load_registry;"
        f"r = load_registry(Path({str(path)!r}));"
        "assert len(r.all()) == 3;"
        "print(sorted(m for m in ('httpx', 'httpx_sse', 'httpcore') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


# --- the fast path ----------------------------------------------------------------

# Values a provider table can hold: each key gets a good value most of the
# time and an odd or wrong one (of any type) now and then.
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(["openai-chat", "openai-responses"]),
    "base_url": st.sampled_from(
        ["http://127.0.0.1:11434/v1", "https://api.openai.com/v1/", "http://h", "https://h:1/"]
    ),
    "default_model": st.sampled_from(["m", "llama3.2", "gpt-4.1"]),
    "api_key_env": st.sampled_from(["MY_KEY", "_k", "K1"]),
    "request_timeout_s": st.one_of(st.integers(1, 10_000), st.floats(0.001, 1e6)),
    "max_retries": st.integers(0, 100),
    "retry_base_delay_s": st.one_of(st.integers(0, 60), st.floats(0, 60)),
    "api_key_header": st.sampled_from(["Authorization", "api-key", "X-Api-Key", "authorization"]),
    "organization": st.sampled_from(["org-abc123", "o"]),
    "project": st.sampled_from(["proj_abc", "p"]),
    "headers": st.dictionaries(
        st.sampled_from(
            [
                "X-Title",
                "HTTP-Referer",
                "User-Agent",
                "api-key",
                "Authorization",
                "OpenAI-Organization",
                "openai-project",
                "X-A",
                "x-a",
            ]
        ),
        st.sampled_from(
            ["", "My app", "https://example.org", "${TOKEN}", "Bearer ${T_1}", "a${A}b${B}"]
        ),
        max_size=3,
    ),
}
_ODD: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        ["", "other", "MY KEY", "1KEY", "ok\n", "ftp://h", "http://", "http://[::1",
         "http://h/v1?x=1", "http://h/v1#f", "http://h/v1?x#", "http://h/?", "localhost:8080",
         "600", None, "Content-Type", "X A", "o o", "é", "Host"]
    ),
    st.integers(-5, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    # Header tables with a bad name or value.
    st.dictionaries(
        st.sampled_from(["X-A", "x-a", "X A", "Content-Length", "host", "", "é"]),
        st.one_of(
            st.sampled_from(["v", "a\nb", "\t", "é", "${", "${1X}", "${A B}", "${A}}", "$${A}"]),
            st.integers(),
            st.none(),
        ),
        max_size=3,
    ),
)  # fmt: skip
_OPTIONAL = (
    "api_key_env",
    "request_timeout_s",
    "max_retries",
    "retry_base_delay_s",
    "api_key_header",
    "organization",
    "project",
    "headers",
)


@st.composite
def _provider_tables(draw: st.DrawFn) -> Any:
    """A provider table, mostly valid, with a missing, wrong or unknown key now and then."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_ODD)
    table: dict[str, Any] = {}
    for key, good in _GOOD.items():
        if key in _OPTIONAL and draw(st.booleans()):
            continue
        if draw(st.integers(0, 11)) == 0:
            if draw(st.booleans()):
                continue  # leave a key out
            table[key] = draw(_ODD)
        else:
            table[key] = draw(good)
    if draw(st.integers(0, 11)) == 0:
        table[draw(st.sampled_from(["api_key", "max_retires", "header", "org"]))] = draw(_ODD)
    return table


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    """A whole file's table, mostly valid."""
    table: dict[str, Any] = {}
    if draw(st.booleans()):
        table["default_provider"] = draw(st.sampled_from(["local", "b", "echo"]))
    if draw(st.integers(0, 3)):
        names = st.sampled_from(["local", "b", "my local"])
        table["providers"] = draw(st.dictionaries(names, _provider_tables(), max_size=3))
    if draw(st.integers(0, 11)) == 0:
        table[draw(st.sampled_from(["default_provider", "providers", "default_providr"]))] = draw(
            _ODD
        )
    return table


@settings(max_examples=400, deadline=None)
@given(_configs())
def test_the_fast_path_accepts_only_what_pydantic_accepts_and_reads_it_alike(
    table: dict[str, Any],
) -> None:
    fast = fast_config(table)
    if fast is None:
        return
    assert validated_config("config.toml", table) == fast


@pytest.mark.parametrize("text", [FULL, ACCOUNTS, "", 'default_provider = "echo"\n'])
def test_ordinary_files_take_the_fast_path(text: str) -> None:
    import tomllib

    table = tomllib.loads(text)
    assert fast_config(table) == validated_config("config.toml", table)
    assert fast_config(table) is not None


@pytest.mark.parametrize("text", [FULL, ACCOUNTS])
def test_loading_a_valid_configuration_does_not_import_pydantic(tmp_path: Path, text: str) -> None:
    # Start-up time: the server answers `initialize` without pydantic models.
    path = write(tmp_path, text)
    code = (
        "import sys; from pathlib import Path;"
        "from convmgr.providers.config import load_registry;"
        f"load_registry(Path({str(path)!r}));"
        "print('pydantic' in sys.modules)"
    )
    env = {**os.environ, **ACCOUNTS_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"
