"""What the README and `--help` say of the command line holds."""

import argparse
import os
import pty
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from client import DEFAULT_TIMEOUT, server_env

from convmgr.cli import build_parser


def run(tmp_path: Path, *args: Any, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "convmgr", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
    )


def test_help_lists_environment_files_exit_codes_and_examples(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0
    text = done.stdout.decode()
    for heading in ("environment:", "files:", "exit status:", "examples:"):
        assert heading in text
    assert "CONVMGR_CONFIG" in text and "CONVMGR_HOME" in text
    assert text.count("convmgr --") >= 2


def test_the_help_pipe_example_runs(tmp_path: Path) -> None:
    text = run(tmp_path, "--help").stdout.decode()
    lines = text[text.index("examples:") :].splitlines()[1:6]
    script = "\n".join(line.removeprefix("  ") for line in lines)
    env = server_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, env=env, timeout=DEFAULT_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert b'"turnComplete","lastAgentMessage":"hi"' in done.stdout


def test_schema_to_an_unwritable_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run(tmp_path, "schema", "--out", blocker / "schemas")
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convmgr schema: cannot write")


def test_export_from_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    store = tmp_path / "nowhere" / "s.sqlite3"
    done = run(tmp_path, "export", "c", "--store", store)
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode() == f"convmgr export: no store at {store}\n"
    assert not store.parent.exists()


def test_array_params_on_ping_and_shutdown_are_invalid_params(spawn: Any) -> None:
    client = spawn("--no-store")
    assert client.error("ping", [])["code"] == -32602
    assert client.error("shutdown", [1])["code"] == -32602
    assert client.result("ping") == {}


def test_lowercase_content_length_is_a_header(spawn: Any) -> None:
    client = spawn("--no-store", framing="lsp")
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    client.send_raw(b"content-length: %d\r\n\r\n%s" % (len(body), body))
    assert client.response(1) == {"jsonrpc": "2.0", "id": 1, "result": {}}


def _line(stream: IO[bytes]) -> bytes:
    """One line, or a failure (not a hang) if none comes."""
    lines: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=DEFAULT_TIMEOUT)


def test_on_a_terminal_it_says_how_to_use_it_and_keeps_serving(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", "--no-store"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(tmp_path),
    )
    os.close(slave)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        os.write(master, b'{"id":1,"method":"ping"}\n')
        assert _line(proc.stdout) == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
        os.write(master, b"\x04")  # Ctrl-D: end of input
        assert proc.wait(DEFAULT_TIMEOUT) == 0
        hint = proc.stderr.read().decode()
        assert hint.startswith("convmgr: serving JSON-RPC on stdin/stdout")
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_help_names_exec_doctor_and_the_log_flags(tmp_path: Path) -> None:
    text = run(tmp_path, "--help").stdout.decode()
    for word in ("exec", "doctor", "--log-format", "--log-content", "--log-libraries", "130"):
        assert word in text, word
    for command in ("exec", "doctor"):
        done = run(tmp_path, command, "--help")
        assert done.returncode == 0
        sub = done.stdout.decode()
        assert "exit status:" in sub and "examples:" in sub
        assert sub.count(f"convmgr {command}") >= 2


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--version")
    }


def test_the_readme_documents_every_flag_of_serve_exec_and_doctor() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line") : readme.index("## Providers")]
    parser = build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    for name in ("serve", "exec", "doctor"):
        for flag in _flags(commands.choices[name]):
            assert f"`{flag}" in section or f"{flag} " in section, (name, flag)
