"""`convmgr doctor` through the real binary: the configuration, store and providers in effect."""

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from client import DEFAULT_TIMEOUT, server_env
from provider_config import write_provider_config

from convmgr.store.sqlite_schema import SCHEMA_VERSION

KEY = "sk-doctor-Jt4Nc8Qa2Xe6Hw"
KEY_ENV = "CONVMGR_DOCTOR_TEST_KEY"


def doctor(
    tmp_path: Path, *args: Any, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convmgr", "doctor", *map(str, args)],
        capture_output=True,
        text=True,
        env=server_env(tmp_path, env),
        timeout=DEFAULT_TIMEOUT,
    )


def write_config(tmp_path: Path, base_url: str, *, down_url: str | None = None) -> Path:
    """The fake server as `fake` (with a key), an MCP server, and maybe a provider that is down."""
    extra = """
[mcp_servers.time]
command = "uvx"
args = ["mcp-server-time"]
approval = "auto"
"""
    if down_url is not None:
        extra += f"""
[providers.down]
kind = "openai-chat"
base_url = "{down_url}"
default_model = "m"
"""
    return write_provider_config(
        tmp_path, base_url, kind="openai-responses", key_env=KEY_ENV, extra=extra
    )


def closed_port_url() -> str:
    """A URL on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_without_configuration_or_store_it_says_so_and_creates_nothing(tmp_path: Path) -> None:
    done = doctor(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    config = tmp_path / "config" / "convmgr" / "config.toml"
    store = tmp_path / "home" / "conversations.sqlite3"
    assert f"config file: {config} (from the default location), does not exist" in out
    assert "the echo provider only" in out
    assert f"store: {store}, does not exist yet" in out
    assert "providers (default: echo):\n  echo: built-in" in out
    assert "MCP servers: none" in out
    assert not store.exists()


def test_providers_keys_and_mcp_servers_are_listed_never_the_key(
    tmp_path: Path, fake_openai_url: str
) -> None:
    config = write_config(tmp_path, fake_openai_url)
    done = doctor(tmp_path, "--config", config, env={KEY_ENV: KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"config file: {config} (from --config), exists" in out
    assert (
        f"  fake: openai-responses, base_url {fake_openai_url}, default model ok, "
        f"key variable {KEY_ENV} is set"
    ) in out
    assert "MCP servers:\n  time: uvx mcp-server-time, approval auto" in out
    assert KEY not in out + done.stderr

    unset = doctor(tmp_path, "--config", config)
    assert f"key variable {KEY_ENV} is NOT set" in unset.stdout


def test_check_asks_each_provider_for_its_models(tmp_path: Path, fake_openai_url: str) -> None:
    config = write_config(tmp_path, fake_openai_url)
    done = doctor(tmp_path, "--config", config, "--check", env={KEY_ENV: KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"  fake: ok: {fake_openai_url}/models: HTTP 200 OK in " in done.stdout
    assert ", 1 models" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_a_check_that_fails_is_exit_1(tmp_path: Path, fake_openai_url: str) -> None:
    down = closed_port_url()
    config = write_config(tmp_path, fake_openai_url, down_url=down)
    done = doctor(tmp_path, "--config", config, "--check", env={KEY_ENV: KEY})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "  fake: ok:" in done.stdout
    assert f"  down: FAILED: {down}/models: ConnectError" in done.stdout
    # Without --check nothing is asked, and all is fine.
    assert doctor(tmp_path, "--config", config).returncode == 0


def test_a_configuration_error_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[providers.x]\nkind = 'openai-chat'\n", encoding="utf-8")
    done = doctor(tmp_path, "--config", config, "--check")
    assert done.returncode == 2
    assert f"  error: {config}: [providers.x] base_url: field required" in done.stdout
    missing = doctor(tmp_path, "--config", tmp_path / "missing.toml")
    assert missing.returncode == 2
    assert "does not exist\n  error: " in missing.stdout and "no such file" in missing.stdout


def test_the_store_schema_version_and_size(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    made = subprocess.run(
        [sys.executable, "-m", "convmgr", "exec", "--store", str(store), "hi"],
        capture_output=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
    )
    assert made.returncode == 0
    done = doctor(tmp_path, "--store", store)
    assert done.returncode == 0
    assert (
        f"store: {store}, exists, schema version {SCHEMA_VERSION} (current), 1 conversations"
        in done.stdout
    )

    foreign = tmp_path / "not-a-store"
    foreign.write_text("hello", encoding="utf-8")
    bad = doctor(tmp_path, "--store", foreign)
    assert bad.returncode == 2
    assert f"store: {foreign}, exists\n  error: not a SQLite database" in bad.stdout
