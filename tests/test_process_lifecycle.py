"""What only a process shows: a closed stdout ends the server; the log never goes to stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from client import DEFAULT_TIMEOUT, server_env


def test_a_closed_stdout_ends_the_server_as_a_signal_would(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmgr", "--store", str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.close()  # the client stops reading
    requests = [
        {"id": 1, "method": "newConversation", "params": {"conversationId": "c"}},
        {"id": 2, "method": "sendUserTurn", "params": {"conversationId": "c", "input": []}},
    ]
    proc.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
    proc.stdin.flush()
    # stdin stays open: the server must notice its stdout is gone by itself.
    try:
        status = proc.wait(DEFAULT_TIMEOUT)
    finally:
        proc.kill()
        proc.stdin.close()
    assert status == 0, proc.stderr.read().decode() if proc.stderr else ""
    # The store was flushed and the lease released: another process can resume it.
    exported = subprocess.run(
        [sys.executable, "-m", "convmgr", "export", "c", "--store", str(store)],
        capture_output=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
        check=True,
    )
    assert json.loads(exported.stdout.splitlines()[0])["conversationId"] == "c"


def _start(tmp_path: Path, *args: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "convmgr", "--no-store", *map(str, args)],
        input=b'{"id":1,"method":"ping"}\n',
        capture_output=True,
        env=server_env(tmp_path),
        timeout=DEFAULT_TIMEOUT,
    )


def test_a_log_file_that_is_stdout_is_refused(tmp_path: Path) -> None:
    for path in ("/dev/stdout", f"/proc/{'self'}/fd/1"):
        done = _start(tmp_path, "--log-level", "debug", "--log-file", path)
        assert done.returncode == 2
        assert done.stdout == b""
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1 and "stdout" in lines[0]


def test_a_log_file_that_is_the_file_stdout_goes_to_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "convmgr", "--no-store", "--log-file", str(out)],
            input=b'{"id":1,"method":"ping"}\n',
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=server_env(tmp_path),
            timeout=DEFAULT_TIMEOUT,
        )
    assert done.returncode == 2
    assert out.read_bytes() == b""


def test_an_unopenable_log_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _start(tmp_path, "--log-file", tmp_path / "missing" / "dir" / "log.txt")
    assert done.returncode == 2
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convmgr: cannot open log file")


def test_a_log_file_gets_the_log_and_stdout_only_the_protocol(tmp_path: Path) -> None:
    log = tmp_path / "convmgr.log"
    done = _start(tmp_path, "--log-level", "debug", "--log-file", log)
    assert done.returncode == 0
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"jsonrpc": "2.0", "id": 1, "result": {}}
    ]
    assert log.exists()
    assert os.stat(log).st_size >= 0
