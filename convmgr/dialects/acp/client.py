"""The editor as the core reaches it: its tools through `fs/*` and `terminal/*`, approvals.

Every call of an ACP session's `write_file` and `run_command`, and of an MCP
tool whose server asks, is approved first with `session/request_permission`
(ACP makes it baseline, so an ACP client can always be asked).
"""

import logging
import os
from typing import Any

import anyio

from convmgr.core.client import ClientUnavailable, Decision, ToolRequest
from convmgr.dialects.acp.checks import schema
from convmgr.dialects.acp.translate import (
    ASKED_FIRST,
    READ_FILE,
    RUN_COMMAND,
    WRITE_FILE,
    tool_kind,
    tool_title,
)
from convmgr.jsonrpc.connection import Connection
from convmgr.jsonrpc.errors import ClientGone, RpcError
from convmgr.model import ToolOutcome

log = logging.getLogger(__name__)

PERMISSION_OPTIONS = [
    {"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
    {"optionId": "allow_always", "name": "Always allow", "kind": "allow_always"},
    {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
]
_DECISIONS: dict[str, Decision] = {
    "allow_once": "allow",
    "allow_always": "allowAlways",
    "reject_once": "deny",
}
# How much of a command's output the editor keeps for the model.
OUTPUT_BYTE_LIMIT = 64 * 1024
# A terminal is released even when its call was cancelled, within this long.
_RELEASE_TIMEOUT_S = 5.0


class Malformed(Exception):
    """The client's answer does not fit the schema."""


class AcpClient:
    """Server → client requests of the ACP dialect (docs/protocol.md §15)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Each loaded session's working directory: relative paths are taken from it.
        self.cwds: dict[str, str] = {}

    def can_approve(self) -> bool:
        """Always: `session/request_permission` is baseline ACP."""
        return True

    def needs_approval(self, name: str) -> bool:
        """Writes and commands are approved first; reads are not."""
        return name in ASKED_FIRST

    async def request_approval(self, request: ToolRequest) -> Decision:
        """`session/request_permission`; a cancelled outcome or a bad answer is "deny"."""
        params = {
            "sessionId": request.conversation_id,
            "toolCall": {
                "toolCallId": request.call_id,
                "title": tool_title(request.name, request.arguments),
                "kind": tool_kind(request.name),
                "status": "pending",
                "rawInput": request.arguments,
            },
            "options": PERMISSION_OPTIONS,
        }
        try:
            answer = await self._request(
                "session/request_permission", params, "RequestPermissionResponse"
            )
        except (RpcError, Malformed) as exc:
            log.info("session/request_permission %s: %s: denied", request.call_id, exc)
            return "deny"
        outcome = answer.outcome
        if outcome.outcome == "selected":
            return _DECISIONS.get(outcome.option_id, "deny")
        return "deny"

    async def call_tool(self, request: ToolRequest) -> ToolOutcome:
        """Run an editor tool through the client; its errors are failed outcomes."""
        try:
            if request.name == READ_FILE:
                return await self._read_file(request)
            if request.name == WRITE_FILE:
                return await self._write_file(request)
            if request.name == RUN_COMMAND:
                return await self._run_command(request)
        except RpcError as exc:
            log.info("%s %s: error %d: %s", request.name, request.call_id, exc.code, exc)
            return ToolOutcome(exc.message or f"error {exc.code}", is_error=True)
        except Malformed as exc:
            log.warning("%s %s: malformed answer: %s", request.name, request.call_id, exc)
            return ToolOutcome(f"the editor's answer is malformed: {exc}", is_error=True)
        except _BadArguments as exc:
            return ToolOutcome(str(exc), is_error=True)
        return ToolOutcome(f"unknown tool: {request.name}", is_error=True)

    # --- the tools ----------------------------------------------------------------------

    async def _read_file(self, request: ToolRequest) -> ToolOutcome:
        args = request.arguments
        params: dict[str, Any] = {
            "sessionId": request.conversation_id,
            "path": self._path(request, _text(args, "path")),
        }
        for key in ("line", "limit"):
            value = args.get(key)
            if value is not None:
                if type(value) is not int or value < 1:
                    raise _BadArguments(f"{key} must be a positive integer")
                params[key] = value
        answer = await self._request("fs/read_text_file", params, "ReadTextFileResponse")
        return ToolOutcome(answer.content)

    async def _write_file(self, request: ToolRequest) -> ToolOutcome:
        args = request.arguments
        path = self._path(request, _text(args, "path"))
        content = _text(args, "content", empty=True)
        params = {"sessionId": request.conversation_id, "path": path, "content": content}
        await self._request("fs/write_text_file", params, "WriteTextFileResponse")
        return ToolOutcome(f"wrote {len(content.encode())} bytes to {path}")

    async def _run_command(self, request: ToolRequest) -> ToolOutcome:
        args = request.arguments
        session = request.conversation_id
        params: dict[str, Any] = {
            "sessionId": session,
            "command": _text(args, "command"),
            "outputByteLimit": OUTPUT_BYTE_LIMIT,
        }
        command_args = args.get("args")
        if command_args is not None:
            if not isinstance(command_args, list) or not all(
                isinstance(arg, str) for arg in command_args
            ):
                raise _BadArguments("args must be a list of strings")
            params["args"] = command_args
        cwd = args.get("cwd")
        params["cwd"] = self._path(request, cwd) if isinstance(cwd, str) else self._cwd(session)
        created = await self._request("terminal/create", params, "CreateTerminalResponse")
        terminal = {"sessionId": session, "terminalId": created.terminal_id}
        try:
            exit_status = await self._request(
                "terminal/wait_for_exit", terminal, "WaitForTerminalExitResponse"
            )
            output = await self._request("terminal/output", terminal, "TerminalOutputResponse")
        finally:
            # Released even when the call is cancelled: the editor then kills the command.
            with anyio.move_on_after(_RELEASE_TIMEOUT_S, shield=True):
                try:
                    await self.conn.request("terminal/release", terminal)
                except (RpcError, ClientGone) as exc:
                    log.info("terminal/release %s: %s", created.terminal_id, exc)
        text = output.output
        if output.truncated:
            text += "\n[output truncated]"
        code, signal = exit_status.exit_code, exit_status.signal
        status = f"killed by signal {signal}" if signal else f"exit status {code}"
        return ToolOutcome(f"{text}\n[{status}]" if text else f"[{status}]", bool(code or signal))

    # --- helpers -----------------------------------------------------------------------

    async def _request(self, method: str, params: dict[str, Any], model: str) -> Any:
        """A request whose answer is validated with the generated model `model`."""
        try:
            result = await self.conn.request(method, params)
        except ClientGone as exc:
            raise ClientUnavailable(str(exc)) from None
        from pydantic import ValidationError

        try:
            return getattr(schema(), model).model_validate(
                result if result is not None else {}
            )
        except ValidationError as exc:
            raise Malformed(f"{method}: {exc.errors(include_url=False)[0]['msg']}") from None

    def _cwd(self, session_id: str) -> str:
        return self.cwds.get(session_id) or os.getcwd()

    def _path(self, request: ToolRequest, path: str) -> str:
        """ACP takes absolute paths: a relative one is the session's cwd's."""
        return os.path.normpath(os.path.join(self._cwd(request.conversation_id), path))


class _BadArguments(Exception):
    """The model's arguments do not fit the tool."""


def _text(args: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = args.get(key)
    if not isinstance(value, str) or (not value and not empty):
        raise _BadArguments(f"{key} must be a {'string' if empty else 'non-empty string'}")
    return value
