"""A stray print() or a raw write to fd 1 inside the server cannot corrupt the protocol stream."""

import os
import textwrap
from pathlib import Path

from client import text_input

# The tree under test: sitecustomize imports convmgr before `-m` puts the working
# directory on sys.path, so PYTHONPATH must name it, whatever else is installed.
ROOT = Path(__file__).resolve().parents[1]


def patched_env(tmp_path: Path, source: str) -> dict[str, str]:
    """An environment whose sitecustomize runs `source` in the server before it starts."""
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "patch"), str(ROOT)])}


PATCH = textwrap.dedent(
    """
    import os
    import convmgr.providers.echo as echo

    _stream = echo.EchoProvider.stream

    async def noisy_stream(self, request):
        print("stray print from a provider")
        os.write(1, b"raw write to fd 1\\n")
        async for event in _stream(self, request):
            yield event

    echo.EchoProvider.stream = noisy_stream
    """
)


def test_stray_output_goes_to_stderr(spawn, tmp_path: Path) -> None:
    server = spawn("--no-store", env=patched_env(tmp_path, PATCH))
    server.result("newConversation", {"conversationId": "c"})
    server.result("sendUserTurn", {"conversationId": "c", "input": text_input("still clean")})
    events = server.collect_turn("c")
    assert events[-1]["event"]["lastAgentMessage"] == "still clean"
    server.close_stdin()
    server.read_until_eof()  # the client fails on any stdout bytes that are not protocol
    assert server.wait() == 0
    assert "stray print from a provider" in server.stderr()
    assert "raw write to fd 1" in server.stderr()


STDIN_PATCH = textwrap.dedent(
    """
    import os, sys
    import convmgr.providers.echo as echo

    _stream = echo.EchoProvider.stream

    async def stdin_reading_stream(self, request):
        null, zero = os.stat(os.devnull), os.fstat(0)
        same = (null.st_dev, null.st_ino) == (zero.st_dev, zero.st_ino)
        sys.stderr.write(f"fd 0 is {os.devnull}: {same}; it reads {os.read(0, 1 << 16)!r}\\n")
        async for event in _stream(self, request):
            yield event

    echo.EchoProvider.stream = stdin_reading_stream
    """
)


def test_code_that_reads_stdin_gets_nothing_of_the_protocol(spawn, tmp_path: Path) -> None:
    """fd 0 reads /dev/null while serving (as children inheriting it would): the protocol
    reads its own copy."""
    server = spawn("--no-store", env=patched_env(tmp_path, STDIN_PATCH))
    server.result("newConversation", {"conversationId": "c"})
    server.send_many(
        [
            {
                "id": "turn",
                "method": "sendUserTurn",
                "params": {"conversationId": "c", "input": text_input("x")},
            },
            {"id": "after", "method": "ping"},
        ]
    )
    assert server.response("turn")["result"]["turnId"]
    assert server.response("after")["result"] == {}
    events = server.collect_turn("c")
    assert events[-1]["event"]["lastAgentMessage"] == "x"
    server.close_stdin()
    server.read_until_eof()
    assert server.wait() == 0
    assert f"fd 0 is {os.devnull}: True; it reads b''" in server.stderr()
