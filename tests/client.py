"""A small synchronous JSON-RPC client that drives `convmgr` through real pipes.

The server runs as `python -m convmgr ...` with stdin/stdout pipes. A reader
thread frames stdout (ndjson or Content-Length) and hands every message to a
queue, so every read has a timeout and a test can never hang on a silent
server. Every message read is checked against the wire contract (Checker): the
JSON-RPC envelope, `"jsonrpc": "2.0"`, and the pydantic wire models of
`convmgr.dialects.convmgr` for results (by the method of the request) and
`conversation/event` params. Timeouts here are failure guards only; nothing
waits for time to pass. tests/rpc_memory.py is the same client in memory.
"""

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from convmgr.dialects.convmgr.events import ConversationEventParams
from convmgr.dialects.convmgr.schema import METHODS, SERVER_REQUESTS

Message = dict[str, Any]
DEFAULT_TIMEOUT = 20.0

_RESPONSE_KEYS = {"jsonrpc", "id", "result", "error"}
_ERROR_KEYS = {"code", "message", "data"}


class ProtocolViolation(AssertionError):
    """The server wrote something that breaks the wire contract."""


class ServerClosed(AssertionError):
    """The server closed its stdout while a message was still expected."""


class _Eof:
    """Queue marker: stdout reached end of file."""


_EOF = _Eof()


def server_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment where no user configuration or store leaks into the server."""
    env = dict(os.environ)
    env.pop("CONVMGR_CONFIG", None)
    env.pop("CONVMGR_STORE", None)
    env["CONVMGR_HOME"] = str(home / "home")
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data")
    env["XDG_STATE_HOME"] = str(home / "state")
    if extra:
        env.update(extra)
    return env


def encode(obj: Any, framing: str) -> bytes:
    """One message, framed the way the server expects it."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    return frame(body, framing)


def frame(body: bytes, framing: str) -> bytes:
    """Frame an already-encoded body."""
    if framing == "lsp":
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    return body + b"\n"


# --- validation ----------------------------------------------------------------


def _check_keys(model: type[BaseModel], value: Any, where: str) -> None:
    """Validate `value` with `model` and refuse keys the model does not know."""
    try:
        parsed = model.model_validate(value)
    except Exception as exc:
        raise ProtocolViolation(f"{where}: does not fit {model.__name__}: {exc}") from None
    known = set(parsed.model_dump(by_alias=True))
    unknown = set(value) - known
    if unknown:
        raise ProtocolViolation(f"{where}: unknown keys {sorted(unknown)} for {model.__name__}")


def check_event_params(params: Any) -> ConversationEventParams:
    """Check `conversation/event` params (and the event's own keys); the parsed model."""
    if not isinstance(params, dict):
        raise ProtocolViolation(f"conversation/event params not an object: {params!r}")
    _check_keys(ConversationEventParams, params, "conversation/event")
    parsed = ConversationEventParams.model_validate(params)
    _check_keys(type(parsed.event), params["event"], f"event {params['event'].get('type')}")
    return parsed


def check_result(method: str, result: Any) -> None:
    """Check a result against the method's result model."""
    if method not in METHODS:
        return
    _, model = METHODS[method]
    if not isinstance(result, dict):
        raise ProtocolViolation(f"{method} result is not an object: {result!r}")
    _check_keys(model, result, f"{method} result")


def check_server_request(msg: Message) -> None:
    """A request from the server: ids "s1", "s2", ..., params fitting the method's model."""
    if msg.get("jsonrpc") != "2.0" or set(msg) - {"jsonrpc", "id", "method", "params"}:
        raise ProtocolViolation(f"bad server request: {msg!r}")
    if not isinstance(msg["id"], str) or not msg["id"].startswith("s"):
        raise ProtocolViolation(f"server request ids are strings s1, s2, ...: {msg!r}")
    if msg["method"] not in SERVER_REQUESTS:
        raise ProtocolViolation(f"unexpected server request: {msg!r}")
    model, _ = SERVER_REQUESTS[msg["method"]]
    _check_keys(model, msg.get("params"), f"{msg['method']} params")


def is_from_server(msg: Any) -> bool:
    """Whether a message is a server request or the server's `$/cancelRequest`."""
    return isinstance(msg, dict) and (
        ("method" in msg and "id" in msg) or msg.get("method") == "$/cancelRequest"
    )


def check_response_envelope(msg: Any) -> None:
    """A response object as JSON-RPC 2.0 section 5 describes it."""
    if not isinstance(msg, dict):
        raise ProtocolViolation(f"not a JSON object: {msg!r}")
    if msg.get("jsonrpc") != "2.0":
        raise ProtocolViolation(f'missing "jsonrpc": "2.0": {msg!r}')
    if set(msg) - _RESPONSE_KEYS or "id" not in msg:
        raise ProtocolViolation(f"bad response keys: {sorted(msg)}")
    if ("result" in msg) == ("error" in msg):
        raise ProtocolViolation(f"a response has exactly one of result/error: {msg!r}")
    msg_id = msg["id"]
    if not (msg_id is None or isinstance(msg_id, str) or type(msg_id) is int):
        raise ProtocolViolation(f"bad id: {msg_id!r}")
    if "error" in msg:
        error = msg["error"]
        if (
            not isinstance(error, dict)
            or set(error) - _ERROR_KEYS
            or type(error.get("code")) is not int
            or not isinstance(error.get("message"), str)
        ):
            raise ProtocolViolation(f"bad error object: {error!r}")


def split_frames(buf: bytearray, framing: str, put: Callable[[Any], None]) -> int:
    """Parse complete frames at the start of buf, handing each message to put; bytes used."""
    pos = 0
    if framing == "lsp":
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                return pos
            header = bytes(buf[pos:end])
            name, sep, value = header.partition(b":")
            if not sep or name != b"Content-Length" or not value.strip().isdigit():
                raise ProtocolViolation(f"bad header on stdout: {header[:200]!r}")
            length = int(value)
            start = end + 4
            if len(buf) < start + length:
                return pos
            put(_parse(bytes(buf[start : start + length])))
            pos = start + length
    while True:
        newline = buf.find(b"\n", pos)
        if newline < 0:
            return pos
        put(_parse(bytes(buf[pos:newline])))
        pos = newline + 1


class Checker:
    """Checks every message a client reads against the wire contract."""

    def __init__(self, *, validate: bool = True) -> None:
        self.validate = validate
        self.methods: dict[Any, str] = {}  # request id -> method, to check results

    def _remember(self, obj: Any) -> None:
        for item in obj if isinstance(obj, list) else [obj]:
            if isinstance(item, dict) and "id" in item and isinstance(item.get("method"), str):
                with contextlib.suppress(TypeError):
                    self.methods[item["id"]] = item["method"]

    def check(self, msg: Any) -> None:
        """Check one message against the wire contract (see the module docstring)."""
        if isinstance(msg, list):
            if not msg:
                raise ProtocolViolation("an empty array on stdout")
            for item in msg:
                self._check_response(item)
            return
        if not isinstance(msg, dict):
            raise ProtocolViolation(f"not a JSON object: {msg!r}")
        if "method" in msg and "id" in msg:
            check_server_request(msg)
            return
        if msg.get("method") == "$/cancelRequest":
            params = msg.get("params")
            if not isinstance(params, dict) or not isinstance(params.get("id"), str):
                raise ProtocolViolation(f"bad $/cancelRequest from the server: {msg!r}")
            return
        if "method" in msg:
            if msg.get("jsonrpc") != "2.0":
                raise ProtocolViolation(f'missing "jsonrpc": "2.0": {msg!r}')
            if set(msg) - {"jsonrpc", "method", "params"}:
                raise ProtocolViolation(f"server notification with extra keys: {msg!r}")
            if not self.validate:
                return  # another dialect's notifications (ACP's session/update, say)
            if msg["method"] != "conversation/event":
                raise ProtocolViolation(f"unexpected server notification: {msg!r}")
            if self.validate:
                check_event_params(msg.get("params"))
            return
        self._check_response(msg)

    def _check_response(self, msg: Any) -> None:
        check_response_envelope(msg)
        try:
            method = self.methods.pop(msg["id"], None)
        except TypeError:
            method = None
        if method is not None and "result" in msg and self.validate:
            check_result(method, msg["result"])


# --- the client ---------------------------------------------------------------


class Client(Checker):
    """One `convmgr` server process and the client side of its pipes."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        framing: str = "ndjson",
        env: dict[str, str] | None = None,
        start_reading: bool = True,
        validate: bool = True,
    ) -> None:
        super().__init__(validate=validate)
        self.framing = framing
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convmgr", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin_fd = self.proc.stdin.fileno()
        self._stdout_fd = self.proc.stdout.fileno()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self.responses: dict[Any, Message] = {}  # responses read while waiting for others
        self.notifications: list[Message] = []  # notifications read by request()
        self.batches: list[list[Message]] = []  # batch responses read by request()
        # Server requests and the server's $/cancelRequest notifications, in order;
        # `answer`, when set, answers each request as it is read.
        self.from_server: list[Message] = []
        self.answer: Callable[[Message], Any] | None = None
        self.eof = False
        self.messages_read = 0
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader_started = False
        if start_reading:
            self.start_reading()

    # --- process --------------------------------------------------------------

    def start_reading(self) -> None:
        """Start draining stdout (a client that writes everything first starts late)."""
        if not self._reader_started:
            self._reader_started = True
            self._reader.start()

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def close_stdin(self) -> None:
        """End of input for the server."""
        with self._write_lock, contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal to the server."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The exit status; fails (does not hang) when the server does not exit in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server did not exit within {timeout}s; stderr:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        """Teardown: kill the server if it still runs and release the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        if self._reader_started:
            self._reader.join(10)
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()

    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    # --- writing ----------------------------------------------------------------

    def next_id(self) -> int:
        """A fresh integer request id."""
        return next(self._ids)

    def send(self, obj: Any) -> None:
        """Write one message (or a batch), framed; remembers request methods for checks."""
        self._remember(obj)
        self.send_raw(encode(obj, self.framing))

    def send_many(self, objs: Iterable[Any]) -> None:
        """Write many messages with one write."""
        chunks = []
        for obj in objs:
            self._remember(obj)
            chunks.append(encode(obj, self.framing))
        self.send_raw(b"".join(chunks))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (blocking until the pipe takes them all)."""
        view = memoryview(data)
        with self._write_lock:
            while view:
                written = os.write(self._stdin_fd, view)
                view = view[written:]

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        msg: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    # --- reading -------------------------------------------------------------------

    def _read_stdout(self) -> None:
        fd = self._stdout_fd
        buf = bytearray()
        put = self._queue.put
        try:
            while True:
                try:
                    data = os.read(fd, 1 << 18)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                consumed = split_frames(buf, self.framing, put)
                if consumed:
                    del buf[:consumed]
            if buf:
                put(ProtocolViolation(f"stdout ended inside a message: {bytes(buf[:200])!r}"))
        except ProtocolViolation as exc:
            put(exc)
        finally:
            put(_EOF)

    def read_message(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The next message the server wrote, checked; fails after `timeout` seconds.

        Server requests and `$/cancelRequest` go to `from_server` (answered by
        `answer` if set) and are not returned.
        """
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(max(0.0, deadline - time.monotonic()))
            if not is_from_server(msg):
                return msg
            self.from_server.append(msg)
            if self.answer is not None and "id" in msg:
                reply = self.answer(msg)
                if reply is not None:
                    self.send(reply)

    def server_request(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next server request or `$/cancelRequest` (what is read meanwhile is kept)."""
        deadline = time.monotonic() + timeout
        while not self.from_server:
            msg = self._read_one(max(0.0, deadline - time.monotonic()))
            if is_from_server(msg):
                self.from_server.append(msg)
            elif isinstance(msg, list):
                self.batches.append(msg)
            elif "method" in msg:
                self.notifications.append(msg)
            else:
                self.responses[msg["id"]] = msg
        return self.from_server.pop(0)

    def _read_one(self, timeout: float) -> Any:
        if self.eof:
            raise ServerClosed("the server closed stdout")
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"no message from the server within {timeout}s; stderr:\n{self.stderr()[-4000:]}"
            ) from None
        if item is _EOF:
            self.eof = True
            raise ServerClosed(f"the server closed stdout; stderr:\n{self.stderr()[-4000:]}")
        if isinstance(item, BaseException):
            raise item
        self.messages_read += 1
        self.check(item)
        return item

    def read_until_eof(self, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        """Every message until the server closes stdout (within `timeout` in all)."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            try:
                out.append(self.read_message(max(0.0, deadline - time.monotonic())))
            except ServerClosed:
                return out

    def expect_eof(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The server closes stdout next, with nothing more written."""
        rest = self.read_until_eof(timeout)
        assert rest == [], f"unexpected messages before end of output: {rest[:5]}"

    def response(self, msg_id: Any, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The response with this id; notifications and other responses read meanwhile
        are kept in `notifications`, `responses` and `batches`."""
        if msg_id in self.responses:
            return self.responses.pop(msg_id)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read_message(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, list):
                self.batches.append(msg)
            elif "method" in msg:
                self.notifications.append(msg)
            elif msg["id"] == msg_id and type(msg["id"]) is type(msg_id):
                return msg
            else:
                self.responses[msg["id"]] = msg

    def request(
        self,
        method: str,
        params: Any = None,
        *,
        msg_id: Any = ...,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message:
        """Send a request and return its whole response."""
        if msg_id is ...:
            msg_id = self.next_id()
        msg: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.response(msg_id, timeout)

    def result(self, method: str, params: Any = None, **kw: Any) -> Any:
        """Send a request; its result (fails on an error response)."""
        response = self.request(method, params, **kw)
        assert "result" in response, f"{method} failed: {response}"
        return response["result"]

    def error(self, method: str, params: Any = None, **kw: Any) -> Message:
        """Send a request that must fail; its error object."""
        response = self.request(method, params, **kw)
        assert "error" in response, f"{method} should have failed: {response}"
        return response["error"]

    def events(self, conversation_id: str | None = None) -> list[Message]:
        """The event params kept by request(), optionally of one conversation."""
        return [
            n["params"]
            for n in self.notifications
            if conversation_id is None or n["params"]["conversationId"] == conversation_id
        ]

    def wait_event(
        self,
        conversation_id: str,
        event_type: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message:
        """Read until that conversation's next event of that type; its params.

        Events already kept in `notifications` are searched first (and consumed).
        """
        for index, n in enumerate(self.notifications):
            p = n["params"]
            if p["conversationId"] == conversation_id and p["event"]["type"] == event_type:
                del self.notifications[: index + 1]
                return p
        self.notifications.clear()
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read_message(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, list):
                self.batches.append(msg)
            elif "method" not in msg:
                self.responses[msg["id"]] = msg
            else:
                p = msg["params"]
                if p["conversationId"] == conversation_id and p["event"]["type"] == event_type:
                    return p

    def collect_turn(self, conversation_id: str, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Event params of the conversation up to its next terminal event (kept ones first)."""
        out: list[Message] = []
        kept, self.notifications = self.notifications, []
        pending = iter(kept)
        deadline = time.monotonic() + timeout
        while True:
            msg = next(pending, None)
            if msg is None:
                msg = self.read_message(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, list):
                self.batches.append(msg)
                continue
            if "method" not in msg:
                self.responses[msg["id"]] = msg
                continue
            p = msg["params"]
            if p["conversationId"] != conversation_id:
                self.notifications.append(msg)
                continue
            out.append(p)
            if p["event"]["type"] in TERMINAL:
                self.notifications.extend(pending)
                return out


TERMINAL = frozenset({"turnComplete", "turnAborted", "turnFailed"})


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(body: bytes) -> Any:
    # Strict: NaN and Infinity are not JSON, whatever Python's parser accepts.
    try:
        return json.loads(body, parse_constant=_no_constants)
    except ValueError:
        raise ProtocolViolation(
            f"stdout carries something that is not JSON: {body[:200]!r}"
        ) from None


def text_input(text: str) -> list[dict[str, str]]:
    """`sendUserTurn` input of one text item."""
    return [{"type": "text", "text": text}]
