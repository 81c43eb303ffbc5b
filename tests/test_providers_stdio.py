"""HTTP providers through the real `convmgr` process: config, events, interrupt, no key anywhere.

The fake OpenAI server runs in the test's event loop; convmgr runs as
`python -m convmgr` with pipes, driven by a small async client below.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from fake_openai import FakeOpenAI, Reply, Request, chat_chunk, error_body, stream_reply

pytestmark = pytest.mark.anyio

KEY = "sk-stdio-Hq2Wf9Lp4Xz7Rk1V"
KEY_ENV = "CONVMGR_STDIO_TEST_KEY"
Message = dict[str, Any]


class Convmgr:
    """A running `python -m convmgr`, its stdout read into `messages`."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.messages: list[Message] = []
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._arrived = anyio.Event()
        self._next_id = 0

    async def read_stdout(self) -> None:
        """Collect stdout and parse it line by line."""
        assert self.process.stdout is not None
        buffer = b""
        async for data in self.process.stdout:
            self.stdout += data
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.messages.append(json.loads(line))
            self._arrived.set()
            self._arrived = anyio.Event()

    async def read_stderr(self) -> None:
        """Collect stderr (so that debug logging never fills the pipe)."""
        assert self.process.stderr is not None
        async for data in self.process.stderr:
            self.stderr += data

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request; its id."""
        assert self.process.stdin is not None
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}}
        await self.process.stdin.send(json.dumps(message).encode() + b"\n")
        return self._next_id

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = 10) -> Message:
        """The first message that matches, waiting for it to arrive."""
        with anyio.fail_after(timeout):
            while True:
                for message in self.messages:
                    if match(message):
                        return message
                await self._arrived.wait()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and wait for its result."""
        request_id = await self.send(method, params)
        reply = await self.wait_for(lambda m: m.get("id") == request_id)
        assert "result" in reply, reply
        return reply["result"]

    async def event(self, conversation_id: str, kind: str) -> dict[str, Any]:
        """The first event of that type in the conversation."""
        message = await self.wait_for(
            lambda m: (
                m.get("method") == "conversation/event"
                and m["params"]["conversationId"] == conversation_id
                and m["params"]["event"]["type"] == kind
            )
        )
        event: dict[str, Any] = message["params"]["event"]
        return event

    def events(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every event of the conversation so far."""
        return [
            m["params"]["event"]
            for m in self.messages
            if m.get("method") == "conversation/event"
            and m["params"]["conversationId"] == conversation_id
        ]


def write_config(tmp_path: Path, server: FakeOpenAI) -> Path:
    """A configuration with a chat and a responses provider on the fake server."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
default_provider = "chat"

[providers.chat]
kind = "openai-chat"
base_url = "{server.base_url}"
api_key_env = "{KEY_ENV}"
default_model = "ok"
max_retries = 2
retry_base_delay_s = 0.01
# No read timeout fires during a test: only an interrupt ends a silent stream.
request_timeout_s = 3600

[providers.resp]
kind = "openai-responses"
base_url = "{server.base_url}"
api_key_env = "{KEY_ENV}"
default_model = "ok"
retry_base_delay_s = 0.01
"""
    )
    return path


def environment(tmp_path: Path) -> dict[str, str]:
    """The server's environment: the key set, no user directories."""
    env = {k: v for k, v in os.environ.items() if k != "CONVMGR_CONFIG"}
    env.update(
        {
            KEY_ENV: KEY,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
        }
    )
    return env


async def test_providers_through_the_server_never_show_the_key(tmp_path: Path) -> None:
    silent = anyio.Event()
    attempts: dict[str, int] = {}

    async def handler(request: Request, reply: Reply) -> None:
        body = request.json()
        model = body["model"]
        attempts[model] = attempts.get(model, 0) + 1
        leak = "rejected " + request.headers.get("authorization", "")
        if model == "ok":
            await stream_reply(request, reply, ["Hello ", "from ", "the ", "model."])
        elif model == "flaky" and attempts[model] == 1:
            await reply.start()
            await reply.sse(chat_chunk(content="Hel"))
            await reply.sse({"error": {"message": leak, "type": "server_error"}})
            await reply.end()
        elif model == "flaky":
            await stream_reply(request, reply, ["Hello ", "again."])
        elif model == "denied":
            await reply.json_response(401, error_body(leak, "invalid_api_key"))
        elif model == "garbage":
            await reply.start()
            await reply.chunk(f"data: {{{leak}\n\n".encode())
            await reply.end()
        elif model == "silent":
            await reply.start()
            await reply.sse(chat_chunk(content="Let me think"))
            silent.set()
            await reply.wait_closed()

    async with FakeOpenAI(handler) as server:
        store = tmp_path / "conversations.sqlite3"
        command = [
            sys.executable, "-m", "convmgr", "--config", str(write_config(tmp_path, server)),
            "--store", str(store), "--log-level", "debug",
        ]  # fmt: skip
        process = await anyio.open_process(command, env=environment(tmp_path))
        client = Convmgr(process)
        async with process, anyio.create_task_group() as group:
            group.start_soon(client.read_stdout)
            group.start_soon(client.read_stderr)

            init = await client.call("initialize", {"clientInfo": {"name": "test"}})
            assert {"name": "chat", "kind": "openai-chat", "defaultModel": "ok"} in init[
                "providers"
            ]
            assert {"name": "resp", "kind": "openai-responses", "defaultModel": "ok"} in init[
                "providers"
            ]

            async def turn(conversation: str, text: str, **settings: Any) -> None:
                await client.call("newConversation", {"conversationId": conversation, **settings})
                await client.call(
                    "sendUserTurn",
                    {"conversationId": conversation, "input": [{"type": "text", "text": text}]},
                )

            # A reply from each kind, and a second turn that carries the history.
            await turn("a", "Hi!", instructions="Be kind.")
            done = await client.event("a", "turnComplete")
            assert done["lastAgentMessage"] == "Hello from the model."
            done_seq = max(
                m["params"]["seq"]
                for m in client.messages
                if m.get("method") == "conversation/event" and m["params"]["conversationId"] == "a"
            )
            usage = await client.event("a", "tokenUsage")
            assert usage == {
                "type": "tokenUsage", "inputTokens": 3, "outputTokens": 5, "totalTokens": 8
            }  # fmt: skip
            await client.call(
                "sendUserTurn", {"conversationId": "a", "input": [{"type": "text", "text": "More"}]}
            )
            await client.wait_for(
                lambda m: (
                    m.get("method") == "conversation/event"
                    and m["params"]["conversationId"] == "a"
                    and m["params"]["seq"] > done_seq
                    and m["params"]["event"]["type"] == "turnComplete"
                )
            )
            assert server.requests[1].json()["messages"] == [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello from the model."},
                {"role": "user", "content": "More"},
            ]
            await turn("b", "Hi!", provider="resp")
            assert (await client.event("b", "turnComplete"))["lastAgentMessage"] == (
                "Hello from the model."
            )

            # A transient error after a delta: streamError, then the whole reply once.
            await turn("c", "Hi!", model="flaky")
            assert (await client.event("c", "turnComplete"))["lastAgentMessage"] == "Hello again."
            retried = await client.event("c", "streamError")
            assert retried["attempt"] == 1
            assert retried["message"] == "rejected Bearer ***"
            assert (await client.event("c", "agentMessage"))["text"] == "Hello again."

            # Failures: a 401 and a malformed stream.
            await turn("d", "Hi!", model="denied")
            failed = await client.event("d", "turnFailed")
            assert failed["error"] == {
                "message": "HTTP 401: rejected Bearer ***", "code": "invalid_api_key"
            }  # fmt: skip
            await turn("e", "Hi!", model="garbage")
            assert (await client.event("e", "turnFailed"))["error"]["code"] == "bad_stream"

            # An interrupt while the provider is silent: the server sends nothing
            # more until the client goes away and no read timeout can fire, so
            # only the interrupt can end the turn (event()'s timeout is a guard).
            await turn("f", "Hi!", model="silent")
            await silent.wait()
            await client.event("f", "agentMessageDelta")
            await client.send("interruptConversation", {"conversationId": "f"})
            aborted = await client.event("f", "turnAborted")
            assert aborted["reason"] == "interrupted"
            assert [e["type"] for e in client.events("f")] == [
                "turnStarted", "agentMessageDelta", "turnAborted"
            ]  # fmt: skip
            # The interrupt closed the connection: the server saw the client go.
            with anyio.fail_after(10):  # a failure guard only
                await server.client_gone.wait()

            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(10):
                assert await process.wait() == 0

    first = server.requests[0]
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.json()["messages"][0] == {"role": "system", "content": "Be kind."}
    assert KEY.encode() not in bytes(client.stdout)
    assert KEY.encode() not in bytes(client.stderr)
    assert client.stderr, "debug logging produced nothing: the check above proves little"
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "config.toml"]
    assert any(p.name.startswith("conversations.sqlite3") for p in stored)
    for path in stored:
        assert KEY.encode() not in path.read_bytes(), path


async def test_a_bad_configuration_stops_the_server(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[providers.local]\nkind = "openai-chat"\ndefault_model = "m"\n')
    result = await anyio.run_process(
        [sys.executable, "-m", "convmgr", "--config", str(path), "--no-store"],
        input=b"",
        check=False,
        env=environment(tmp_path),
    )
    assert result.returncode == 2
    assert f"{path}: [providers.local] base_url: field required" in result.stderr.decode()
    assert result.stdout == b""
