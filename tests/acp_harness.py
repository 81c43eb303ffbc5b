"""`convmgr acp` driven by the official Python SDK's client side, every message it writes checked.

`agent(...)` spawns `python -m convmgr acp` with the SDK's spawn_agent_process
and hands out a ClientSideConnection and an EditorDouble (the SDK's Client:
files in a directory, real commands as terminals, scripted permission
answers). Every message convmgr writes is recorded as it arrived, and at the
end validated strictly against `acp.schema` (the SDK itself parses leniently):
the right model for each message, no coercion, no salvaged field, no unknown key.
"""

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import acp
from acp import schema as s
from acp.connection import StreamDirection, StreamEvent
from client import server_env

Message = dict[str, Any]

# The client's requests, by method: the result model of each.
RESULTS: dict[str, type[Any]] = {
    "initialize": s.InitializeResponse,
    "session/new": s.NewSessionResponse,
    "session/load": s.LoadSessionResponse,
    "session/resume": s.ResumeSessionResponse,
    "session/fork": s.ForkSessionResponse,
    "session/list": s.ListSessionsResponse,
    "session/close": s.CloseSessionResponse,
    "session/delete": s.DeleteSessionResponse,
    "session/prompt": s.PromptResponse,
}
# convmgr's requests to the client, by method: their params model.
REQUESTS: dict[str, type[Any]] = {
    "session/request_permission": s.RequestPermissionRequest,
    "fs/read_text_file": s.ReadTextFileRequest,
    "fs/write_text_file": s.WriteTextFileRequest,
    "terminal/create": s.CreateTerminalRequest,
    "terminal/output": s.TerminalOutputRequest,
    "terminal/wait_for_exit": s.WaitForTerminalExitRequest,
    "terminal/release": s.ReleaseTerminalRequest,
    "terminal/kill": s.KillTerminalRequest,
}


def strict(model: type[Any], value: Any, where: str) -> Any:
    """Validate strictly: the model accepts it without coercion and gives it back unchanged."""
    parsed = model.model_validate(value, strict=True)
    again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert again == value, f"{where}: {model.__name__} does not keep it as sent:\n{value}\n{again}"
    return parsed


def check_error(error: Any, where: str) -> None:
    """A JSON-RPC error object; convmgr's always say why in data.reason (or data.errors)."""
    assert isinstance(error, dict) and error.keys() <= {"code", "message", "data"}, where
    assert type(error["code"]) is int and isinstance(error["message"], str), where


class Wire:
    """Every message convmgr wrote, in order, and the client's requests by id."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.sent: dict[Any, str] = {}

    def observe(self, event: StreamEvent) -> None:
        """The SDK's stream observer: sees each message as parsed from the line."""
        message = event.message
        if event.direction == StreamDirection.INCOMING:
            self.received.append(message)
        elif "method" in message and "id" in message:
            self.sent[message["id"]] = message["method"]

    def validate(self) -> int:
        """Check every message convmgr wrote; how many."""
        for n, message in enumerate(self.received):
            where = f"message {n}: {message}"
            assert message.get("jsonrpc") == "2.0", where
            method = message.get("method")
            if method is None:
                assert message.keys() in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"})
                if "error" in message:
                    check_error(message["error"], where)
                else:
                    strict(RESULTS[self.sent[message["id"]]], message["result"], where)
            elif method == "session/update":
                assert message.keys() == {"jsonrpc", "method", "params"}, where
                strict(s.SessionNotification, message["params"], where)
            elif method == "$/cancel_request":
                assert message.keys() == {"jsonrpc", "method", "params"}, where
                assert message["params"].keys() == {"requestId"}, where
            else:
                assert message.keys() == {"jsonrpc", "id", "method", "params"}, where
                strict(REQUESTS[method], message["params"], where)
        return len(self.received)

    def updates(self, session_id: str) -> list[Message]:
        """The session's updates, in order."""
        return [
            m["params"]["update"]
            for m in self.received
            if m.get("method") == "session/update" and m["params"]["sessionId"] == session_id
        ]

    def answer_index(self, method: str) -> int:
        """Where the (last) answer to a request of that method is."""
        return max(
            n
            for n, m in enumerate(self.received)
            if "method" not in m and self.sent.get(m.get("id")) == method
        )


Decide = Callable[[Message], "asyncio.Future[str] | str"]


class EditorDouble:
    """The SDK's Client: a directory of files, real commands, permissions as the test says."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.updates: list[tuple[str, Any]] = []
        self.writes: list[tuple[str, str]] = []
        self.permissions: list[Any] = []
        self.terminal_calls: list[str] = []
        # The answer to each permission request: an optionId, or "cancelled".
        self.decide: Callable[[], Any] = lambda: "allow_once"
        self.asked = asyncio.Event()
        self._terminals: dict[str, tuple[asyncio.subprocess.Process, bytes]] = {}

    async def request_permission(
        self, options: list[Any], session_id: str, tool_call: Any, **kwargs: Any
    ) -> s.RequestPermissionResponse:
        self.permissions.append(tool_call)
        self.asked.set()
        answer = self.decide()
        if asyncio.isfuture(answer) or asyncio.iscoroutine(answer):
            answer = await answer
        if answer == "cancelled":
            return s.RequestPermissionResponse(outcome=s.DeniedOutcome(outcome="cancelled"))
        return s.RequestPermissionResponse(
            outcome=s.AllowedOutcome(outcome="selected", option_id=answer)
        )

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update))

    async def write_text_file(
        self, content: str, path: str, session_id: str, **kwargs: Any
    ) -> s.WriteTextFileResponse:
        self.writes.append((path, content))
        Path(path).write_text(content, encoding="utf-8")
        return s.WriteTextFileResponse()

    async def read_text_file(
        self,
        path: str,
        session_id: str,
        limit: int | None = None,
        line: int | None = None,
        **kwargs: Any,
    ) -> s.ReadTextFileResponse:
        lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
        start = (line or 1) - 1
        end = None if limit is None else start + limit
        return s.ReadTextFileResponse(content="".join(lines[start:end]))

    async def create_terminal(
        self,
        command: str,
        session_id: str,
        args: list[str] | None = None,
        cwd: str | None = None,
        env: Any = None,
        output_byte_limit: int | None = None,
        **kwargs: Any,
    ) -> s.CreateTerminalResponse:
        self.terminal_calls.append("create")
        process = await asyncio.create_subprocess_exec(
            command,
            *(args or []),
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        terminal_id = f"t{len(self._terminals) + 1}"
        self._terminals[terminal_id] = (process, b"")
        return s.CreateTerminalResponse(terminal_id=terminal_id)

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> s.WaitForTerminalExitResponse:
        self.terminal_calls.append("wait_for_exit")
        process, _ = self._terminals[terminal_id]
        assert process.stdout is not None
        output = await process.stdout.read()
        code = await process.wait()
        self._terminals[terminal_id] = (process, output)
        return s.WaitForTerminalExitResponse(exit_code=code)

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> s.TerminalOutputResponse:
        self.terminal_calls.append("output")
        process, output = self._terminals[terminal_id]
        return s.TerminalOutputResponse(
            output=output.decode(),
            truncated=False,
            exit_status=s.TerminalExitStatus(exit_code=process.returncode),
        )

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> s.ReleaseTerminalResponse:
        self.terminal_calls.append("release")
        process, _ = self._terminals.pop(terminal_id)
        if process.returncode is None:
            process.kill()
            await process.wait()
        return s.ReleaseTerminalResponse()

    async def kill_terminal(self, session_id: str, terminal_id: str, **kwargs: Any) -> None:
        self.terminal_calls.append("kill")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def on_connect(self, conn: Any) -> None:
        return None

    def text(self, session_id: str, kind: str = "agent_message_chunk") -> str:
        """The text of the session's chunks of one kind, joined."""
        return "".join(
            u.content.text
            for sid, u in self.updates
            if sid == session_id and u.session_update == kind
        )


FULL_CAPABILITIES = s.ClientCapabilities(
    fs=s.FileSystemCapabilities(read_text_file=True, write_text_file=True), terminal=True
)


@asynccontextmanager
async def agent(
    home: Path, *args: str, editor: EditorDouble | None = None
) -> AsyncIterator[tuple[Any, EditorDouble, Wire]]:
    """`convmgr acp ARGS` through the SDK: (connection, editor, wire); validated at the end."""
    wire = Wire()
    editor = editor or EditorDouble(home)
    env = server_env(home)
    async with acp.spawn_agent_process(
        editor,
        sys.executable,
        "-m",
        "convmgr",
        "acp",
        *args,
        env=env,
        cwd=str(home),
        observers=[wire.observe],
    ) as (conn, _process):
        yield conn, editor, wire
    wire.validate()


async def raw_request(conn: Any, method: str, params: Message) -> Any:
    """A request the Python SDK has no method for (session/delete)."""
    return await conn._conn.send_request(method, params)


async def raw_notify(conn: Any, method: str, params: Message) -> None:
    """A notification the Python SDK has no method for ($/cancel_request)."""
    await conn._conn.send_notification(method, params)
