"""`convmgr exec` through the real binary: one turn, its reply on stdout, its id on stderr."""

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from client import DEFAULT_TIMEOUT, check_event_params, server_env, text_input
from provider_config import write_provider_config

ID_LINE = re.compile(r"^conversation: (\S+)$", re.MULTILINE)


def run_exec(
    tmp_path: Path, *args: Any, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convmgr", "exec", *map(str, args)],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=server_env(tmp_path, env),
        timeout=DEFAULT_TIMEOUT,
    )


def conversation_id(done: subprocess.CompletedProcess[str]) -> str:
    """The id exec printed on stderr."""
    found = ID_LINE.search(done.stderr)
    assert found, done.stderr
    return found.group(1)


def test_a_prompt_on_echo_streams_the_reply_to_stdout(tmp_path: Path) -> None:
    done = run_exec(tmp_path, "--no-store", "Hello from exec")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from exec\n"
    assert done.stderr.splitlines() == [f"conversation: {conversation_id(done)}"]


def test_the_prompt_comes_from_stdin_when_absent_or_dash(tmp_path: Path) -> None:
    for args in ((), ("-",)):
        done = run_exec(tmp_path, "--no-store", *args, stdin=b"piped words\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "piped words\n"


def test_json_prints_the_events_of_conversation_event(tmp_path: Path) -> None:
    done = run_exec(tmp_path, "--no-store", "--json", "one two")
    assert done.returncode == 0, done.stderr
    params = [json.loads(line) for line in done.stdout.splitlines()]
    for p in params:
        check_event_params(p)
    assert {p["conversationId"] for p in params} == {conversation_id(done)}
    assert [p["seq"] for p in params] == list(range(1, len(params) + 1))
    assert [p["event"]["type"] for p in params] == [
        "turnStarted",
        "agentMessageDelta",
        "agentMessageDelta",
        "agentMessage",
        "tokenUsage",
        "turnComplete",
        "shutdownComplete",
    ]
    assert params[-2]["event"]["lastAgentMessage"] == "one two"


def test_resume_continues_a_stored_conversation(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first = run_exec(tmp_path, "--store", store, "first turn")
    assert first.returncode == 0, first.stderr
    cid = conversation_id(first)
    second = run_exec(tmp_path, "--store", store, "--resume", cid, "second turn")
    assert second.returncode == 0, second.stderr
    assert conversation_id(second) == cid
    assert second.stdout == "second turn\n"
    exported = subprocess.run(
        [sys.executable, "-m", "convmgr", "export", cid, "--store", str(store)],
        capture_output=True,
        text=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
    )
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[0]["historyLength"] == 4
    texts = [item["content"][0]["text"] for item in lines[1:]]
    assert texts == ["first turn", "first turn", "second turn", "second turn"]


def test_a_named_conversation_then_resumed(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    assert run_exec(tmp_path, "--store", store, "--conversation", "mine", "a").returncode == 0
    again = run_exec(tmp_path, "--store", store, "--conversation", "mine", "b")
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        "convmgr exec: conversation 'mine' already exists: continue it with --resume"
    ]
    assert run_exec(tmp_path, "--store", store, "--resume", "mine", "b").returncode == 0


def test_an_unknown_resume_id_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_exec(tmp_path, "--store", tmp_path / "s.sqlite3", "--resume", "nope", "hi")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["convmgr exec: no stored conversation 'nope' to resume"]


def test_bad_usage_is_exit_2(tmp_path: Path) -> None:
    cases: list[tuple[tuple[Any, ...], str]] = [
        (("--no-store",), "the prompt is empty"),
        (("--no-store", "--resume", "x", "hi"), "--resume needs the store"),
        (("--no-store", "--provider", "nope", "hi"), "unknown provider 'nope'"),
        (("--conversation", "a", "--resume", "b", "hi"), "not allowed with argument"),
    ]
    for args, message in cases:
        done = run_exec(tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)


def test_a_provider_failure_is_exit_1_with_the_error(tmp_path: Path, fake_openai_url: str) -> None:
    config = write_provider_config(tmp_path, fake_openai_url)
    done = run_exec(tmp_path, "--no-store", "--config", config, "--model", "status:500", "hi")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "convmgr exec: the turn failed: HTTP 500: scripted 500" in done.stderr
    ok = run_exec(tmp_path, "--no-store", "--config", config, "words from the fake")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "words from the fake\n"


def _line(stream: IO[str]) -> str:
    """One line, or a failure (not a hang) if none comes."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=DEFAULT_TIMEOUT)


def test_sigint_interrupts_the_turn_with_exit_130(tmp_path: Path, fake_openai_url: str) -> None:
    store = tmp_path / "s.sqlite3"
    config = write_provider_config(tmp_path, fake_openai_url)
    command = [sys.executable, "-m", "convmgr", "exec", "--store", str(store)]
    command += ["--config", str(config), "--model", "silent", "wait for it"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(tmp_path),
    )
    try:
        assert proc.stderr is not None
        # Printed once SIGINT interrupts the turn rather than the process.
        first = _line(proc.stderr)
        assert first.startswith("conversation: "), first
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEFAULT_TIMEOUT) == 130
        assert "convmgr exec: interrupted" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    # The user message was kept: the conversation can be resumed.
    cid = first.removeprefix("conversation: ").strip()
    again = run_exec(tmp_path, "--store", store, "--resume", cid, "--provider", "echo", "next")
    assert again.returncode == 0, again.stderr


def test_client_tools_cannot_be_answered_and_exec_says_so(spawn, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    clock = {"name": "clock", "description": "The time.", "inputSchema": {"type": "object"}}
    server = spawn("--store", store)
    server.result("newConversation", {"conversationId": "tools", "tools": [clock]})
    server.result("sendUserTurn", {"conversationId": "tools", "input": text_input("plain")})
    server.collect_turn("tools")
    server.close_stdin()
    server.read_until_eof()
    assert server.wait() == 0

    done = run_exec(tmp_path, "--store", store, "--resume", "tools", "/call clock {}")
    assert done.returncode == 0, done.stderr
    assert "declares client tools (clock); exec cannot run them" in done.stderr
    assert "convmgr exec: tool call: clock" in done.stderr
    assert "tool call clock failed: client gone" in done.stderr


def test_a_reader_that_goes_away_interrupts_the_turn(tmp_path: Path) -> None:
    # Far more than a pipe holds: exec is still writing when stdout is closed.
    prompt = " ".join(str(n) for n in range(300_000)).encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", "exec", "--no-store"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(tmp_path),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(prompt)
        proc.stdin.close()
        assert proc.stdout.read(10) == b"0 1 2 3 4 "
        proc.stdout.close()
        assert proc.wait(DEFAULT_TIMEOUT) == 1
        assert b"stdout was closed, so the turn was interrupted" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
