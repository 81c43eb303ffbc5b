"""A stray print() or a raw write to fd 1 inside the server cannot corrupt the protocol stream."""

import textwrap
from pathlib import Path

from client import text_input

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
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(PATCH)
    server = spawn("--no-store", env={"PYTHONPATH": str(tmp_path / "patch")})
    server.result("newConversation", {"conversationId": "c"})
    server.result("sendUserTurn", {"conversationId": "c", "input": text_input("still clean")})
    events = server.collect_turn("c")
    assert events[-1]["event"]["lastAgentMessage"] == "still clean"
    server.close_stdin()
    server.read_until_eof()  # the client fails on any stdout bytes that are not protocol
    assert server.wait() == 0
    assert "stray print from a provider" in server.stderr()
    assert "raw write to fd 1" in server.stderr()
