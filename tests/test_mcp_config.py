"""`[mcp_servers.NAME]` tables and `max_tool_rounds` in the configuration file."""

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_providers_config import _configs as provider_configs

from convmgr.model import McpServerSettings
from convmgr.providers.config import ConfigError, fast_config, load_config, validated_config

FULL = """
max_tool_rounds = 8

[mcp_servers.files]
command = "mcp-server-filesystem"
args = ["/home/me/project"]
env = { LOG_LEVEL = "debug" }
startup_timeout_s = 5
tool_timeout_s = 30.5
enabled_tools = ["read_file"]
approval = "auto"

[mcp_servers.time-2]
command = "uvx"
args = ["mcp-server-time"]
"""


def problem(tmp_path: Path, text: str) -> str:
    """The ConfigError message for a file with that text."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).replace(f"{path}: ", "config.toml: ")


def test_a_full_file_gives_the_servers_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(path)
    assert config is not None
    assert config.max_tool_rounds == 8
    assert config.mcp_servers == {
        "files": McpServerSettings(
            name="files",
            command="mcp-server-filesystem",
            args=("/home/me/project",),
            env=(("LOG_LEVEL", "debug"),),
            startup_timeout_s=5.0,
            tool_timeout_s=30.5,
            enabled_tools=("read_file",),
            approval="auto",
        ),
        "time-2": McpServerSettings(name="time-2", command="uvx", args=("mcp-server-time",)),
    }


def test_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[mcp_servers.a]\ncommand = "a"\n'))
    assert config is not None
    assert config.max_tool_rounds == 32
    server = config.mcp_servers["a"]
    assert (server.startup_timeout_s, server.tool_timeout_s) == (20.0, 600.0)
    assert (server.args, server.env, server.enabled_tools, server.approval) == ((), (), None, "ask")
    empty = load_config(_write(tmp_path, ""))
    assert empty is not None
    assert (empty.mcp_servers, empty.max_tool_rounds) == ({}, 32)


def _write(tmp_path: Path, text: str) -> Path:
    """A config.toml with that text."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mcp_servers.a]\nargs = []\n", "[mcp_servers.a] command: field required"),
        (
            '[mcp_servers.a]\ncommand = "x"\ncwd = "/tmp"\n',
            "[mcp_servers.a] cwd: unknown field",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\nargs = ["-v", 2]\n',
            "[mcp_servers.a.args] 1: input should be a valid string",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\nenv = { A = 1 }\n',
            "[mcp_servers.a.env] A: input should be a valid string",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\nstartup_timeout_s = 0\n',
            "[mcp_servers.a] startup_timeout_s: input should be greater than 0",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\ntool_timeout_s = -1\n',
            "[mcp_servers.a] tool_timeout_s: input should be greater than 0",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\ntool_timeout_s = true\n',
            "[mcp_servers.a] tool_timeout_s: input should be a valid number",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\nenabled_tools = "read_file"\n',
            "[mcp_servers.a] enabled_tools: input should be a valid list",
        ),
        (
            '[mcp_servers.a]\ncommand = "x"\napproval = "never"\n',
            "[mcp_servers.a] approval: input should be 'ask' or 'auto'",
        ),
        (
            '[mcp_servers."my files"]\ncommand = "x"\n',
            "mcp_servers: server name 'my files' must be letters, digits, '_' or '-' "
            "([A-Za-z0-9_-]+)",
        ),
        ("mcp_servers = 3\n", "mcp_servers: must be a table"),
        ("[mcp_servers]\na = 3\n", "[mcp_servers] a: must be a table"),
        ("max_tool_rounds = 0\n", "max_tool_rounds: input should be greater than or equal to 1"),
        ("max_tool_rounds = 2.0\n", "max_tool_rounds: input should be a valid integer"),
        ("max_tool_rounds = true\n", "max_tool_rounds: input should be a valid integer"),
        ("max_tool_round = 3\n", "max_tool_round: unknown field"),
    ],
)
def test_errors_name_the_table_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert problem(tmp_path, text) == f"config.toml: {expected}"


@pytest.mark.parametrize(
    "text", [FULL, '[mcp_servers.a]\ncommand = "a"\n', "max_tool_rounds = 1\n"]
)
def test_ordinary_files_take_the_fast_path(text: str) -> None:
    table = tomllib.loads(text)
    assert fast_config(table) is not None
    assert fast_config(table) == validated_config("config.toml", table)


# Each key gets a good value most of the time and an odd one (of any type) now and then.
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "command": st.sampled_from(["npx", "mcp-server-time"]),
    "args": st.lists(st.sampled_from(["-y", "/tmp", ""]), max_size=3),
    "env": st.dictionaries(st.sampled_from(["A", "B_1"]), st.sampled_from(["1", ""]), max_size=2),
    "startup_timeout_s": st.one_of(st.integers(1, 100), st.floats(0.001, 1e4)),
    "tool_timeout_s": st.one_of(st.integers(1, 100), st.floats(0.001, 1e4)),
    "enabled_tools": st.lists(st.sampled_from(["read_file", "x"]), max_size=2),
    "approval": st.sampled_from(["ask", "auto"]),
}
_ODD: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["", "ask ", "Auto", "x"]),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@st.composite
def _server_tables(draw: st.DrawFn) -> Any:
    """An `[mcp_servers.NAME]` table, usually valid."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_ODD)
    table: dict[str, Any] = {}
    for key, good in _GOOD.items():
        if key != "command" and draw(st.booleans()):
            continue
        table[key] = draw(_ODD) if draw(st.integers(0, 29)) == 0 else draw(good)
    if draw(st.integers(0, 19)) == 0:
        table[draw(st.sampled_from(["cwd", "timeout", "enabled"]))] = draw(_ODD)
    return table


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    """A whole file's table (providers too) with MCP servers and max_tool_rounds, usually valid."""
    table: dict[str, Any] = draw(provider_configs())
    if draw(st.integers(0, 3)):
        names = st.sampled_from(["files", "time-2", "a_b", "x", "files2", "my files", "a\n"])
        table["mcp_servers"] = draw(
            st.dictionaries(names, _server_tables(), min_size=1, max_size=3)
        )
    if draw(st.booleans()):
        odd = draw(st.integers(0, 9)) == 0
        table["max_tool_rounds"] = draw(_ODD if odd else st.integers(0, 100))
    if draw(st.integers(0, 11)) == 0:
        table["mcp_servers"] = draw(_ODD)
    return table


@settings(max_examples=400, deadline=None)
@given(_configs())
def test_the_fast_path_reads_mcp_tables_as_pydantic_does(table: dict[str, Any]) -> None:
    # The fast path may pass (None); what it accepts, pydantic reads the same way.
    fast = fast_config(table)
    assert fast is None or validated_config("config.toml", table) == fast
