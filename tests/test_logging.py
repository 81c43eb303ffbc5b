"""The log through the real binary: what it says at info, its formats, no user text, no keys.

A scripted session runs against `python -m convmgr --log-level info`; the
lines that explain it must be there, each with a timestamp. The prompt carries
a unique marker that the log shows only with --log-content, and an API key set
for a provider on tests/fake_openai.py never shows, even at debug with the
libraries' own lines on.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from client import DEFAULT_TIMEOUT, Client, server_env, text_input
from provider_config import write_provider_config

MARKER = "zebra-Quokka-7731-marker"
KEY = "sk-logtest-Vq8Rz3Lm5Wd1Yt6K"
KEY_ENV = "CONVMGR_LOG_TEST_KEY"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S+: ")


def text_lines(stderr: str) -> list[str]:
    """The log's lines (a traceback's lines follow the line of their record)."""
    return [line for line in stderr.splitlines() if line and not line.startswith(" ")]


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed."""
    return [json.loads(line) for line in stderr.splitlines() if line]


def session(client: Client, prompt: str = f"hello {MARKER}") -> None:
    """Create, run a turn, fork, remove the fork; then end the input."""
    client.result("newConversation", {"conversationId": "c1"})
    client.result("sendUserTurn", {"conversationId": "c1", "input": text_input(prompt)})
    events = client.collect_turn("c1")
    assert events[-1]["event"]["type"] == "turnComplete"
    fork = client.result("forkConversation", {"conversationId": "c1"})
    client.result("removeConversation", {"conversationId": fork["conversationId"]})
    client.close_stdin()
    client.read_until_eof()
    assert client.wait() == 0


def test_info_explains_a_session_with_a_timestamp_on_every_line(spawn, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first = spawn("--store", store, "--log-level", "info")
    session(first)
    log = first.stderr()
    lines = text_lines(log)
    assert lines and all(TIMESTAMP.match(line) for line in lines), log
    assert "INFO convmgr.app: no configuration file: the echo provider only config=" in log
    assert f"store open store={store} schema_version=" in log
    assert "conversation created conversation_id=c1 provider=echo model=echo" in log
    assert re.search(r"turn started conversation_id=c1 turn_id=\S+ provider=echo model=echo", log)
    assert re.search(
        r"turn ended conversation_id=c1 turn_id=\S+ outcome=complete duration_ms=\d+ tool_calls=0",
        log,
    )
    assert re.search(r"conversation forked conversation_id=\S+ forked_from=c1 provider=echo", log)
    assert re.search(r"conversation removed conversation_id=\S+ provider=echo model=echo", log)
    assert "session ending reason=eof" in log
    assert MARKER not in log

    second = spawn("--store", store, "--log-level", "info")
    second.result("resumeConversation", {"conversationId": "c1"})
    second.close_stdin()
    second.read_until_eof()
    assert second.wait() == 0
    assert "conversation resumed conversation_id=c1 provider=echo model=echo" in second.stderr()


def test_no_store_is_said(spawn) -> None:
    client = spawn("--no-store", "--log-level", "info")
    client.close_stdin()
    client.expect_eof()
    assert client.wait() == 0
    assert "no store (--no-store): conversations are kept in memory only" in client.stderr()


def test_json_lines_carry_time_level_logger_message_and_fields(spawn) -> None:
    client = spawn("--no-store", "--log-level", "info", "--log-format", "json")
    session(client)
    records = json_lines(client.stderr())
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    by_message = {record["message"]: record for record in records}
    created = by_message["conversation created"]
    assert created["level"] == "info" and created["logger"] == "convmgr.core.manager"
    assert (created["conversation_id"], created["provider"], created["model"]) == (
        "c1",
        "echo",
        "echo",
    )
    ended = by_message["turn ended"]
    assert ended["outcome"] == "complete" and ended["tool_calls"] == 0
    assert isinstance(ended["duration_ms"], int)
    assert MARKER not in json.dumps(records)


def test_debug_shows_methods_and_sizes_but_user_text_only_with_log_content(spawn) -> None:
    quiet = spawn("--no-store", "--log-level", "debug")
    session(quiet)
    log = quiet.stderr()
    assert re.search(r"<- request sendUserTurn id=\d+ \(\d+ bytes\)", log)
    assert re.search(r"-> notification conversation/event \(\d+ bytes\)", log)
    assert re.search(r"turn input turn_id=\S+ text=\"<\d+ chars>\"", log)
    assert MARKER not in log

    loud = spawn("--no-store", "--log-level", "debug", "--log-content")
    session(loud)
    assert MARKER in loud.stderr()


def test_log_libraries_needs_log_content(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "convmgr", "--no-store", "--log-level", "debug", "--log-libraries"],
        input=b"",
        capture_output=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
    )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "--log-content" in lines[0]


def test_the_api_key_never_shows_even_at_debug(spawn, tmp_path: Path, fake_openai_url) -> None:
    config = write_provider_config(tmp_path, fake_openai_url, key_env=KEY_ENV, max_retries=1)
    client = spawn(
        "--no-store", "--config", config, "--log-level", "debug",
        "--log-content", "--log-libraries",
        env={KEY_ENV: KEY},
    )  # fmt: skip
    client.result("newConversation", {"conversationId": "ok"})
    client.result("sendUserTurn", {"conversationId": "ok", "input": text_input(MARKER)})
    assert client.collect_turn("ok")[-1]["event"]["type"] == "turnComplete"
    client.result("newConversation", {"conversationId": "bad", "model": "status:500"})
    client.result("sendUserTurn", {"conversationId": "bad", "input": text_input("x")})
    assert client.collect_turn("bad")[-1]["event"]["type"] == "turnFailed"
    client.close_stdin()
    client.read_until_eof()
    assert client.wait() == 0
    log = client.stderr()
    assert MARKER in log  # --log-content: the user text, and the libraries' lines, are there
    assert "httpcore" in log
    assert KEY not in log and KEY[3:15] not in log
    # The retry is explained: the attempt and the reason.
    assert re.search(r"provider fake: HTTP 500: scripted 500; retry 1 of 1 in \d+ ms", log)
    assert "attempt=1 reason=http_500" in log
    assert re.search(r"turn ended conversation_id=bad .*outcome=failed", log)


def test_mcp_servers_started_and_failed_are_logged(spawn, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[mcp_servers.time]",
                f"command = {json.dumps(sys.executable)}",
                'args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]',
                'approval = "auto"',
                "[mcp_servers.broken]",
                f'command = "{tmp_path / "no-such-server"}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    client = spawn("--no-store", "--config", config, "--log-level", "info")
    client.result("newConversation", {"conversationId": "m"})
    client.result("sendUserTurn", {"conversationId": "m", "input": text_input("hi")})
    client.collect_turn("m", timeout=60)
    client.close_stdin()
    client.read_until_eof(timeout=60)
    assert client.wait() == 0
    log = client.stderr()
    assert re.search(r"MCP server started server=time command=\S+ attempt=1 tools=\d+", log)
    assert re.search(r"MCP server failed: command not found: \S+ server=broken attempt=1", log)
    assert "configuration read" in log and "mcp_servers=" in log
