"""One JSON-RPC session over a byte stream.

The reader task frames and validates input and routes each request to its
handler, on the event loop's thread. A handler returns its result, or Work
that names the conversations it orders on: the connection runs that work
inline when those keys are idle and the work finishes without awaiting, and
otherwise in a task that starts once earlier work on the keys has ended.
Batches, invalid input and the answers to the server's own requests
(endpoint.ServerRequests) are handled here; which notification cancels a
request is the dialect's business (it calls `cancel`).
"""

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from inspect import isawaitable
from types import CoroutineType
from typing import Any, TypeGuard

import anyio
from anyio.abc import TaskGroup
from pydantic_core import from_json

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.endpoint import ServerRequests
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.framing import AutoDecoder, BadFrame, Framing, Oversize
from convmgr.jsonrpc.messages import Invalid, RequestId, classify, trace, valid_id, wire_log
from convmgr.jsonrpc.outbound import Outbound
from convmgr.jsonrpc.sequencer import KeyedSequencer, Ticket
from convmgr.jsonrpc.transport import ByteStream

log = logging.getLogger(__name__)

MAX_INFLIGHT = 1024  # requests running as tasks at once; the reader waits beyond this


@dataclass(slots=True)
class Work:
    """What a handler returns when its answer depends on ordering or on waiting.

    `run()` gives the result, or an awaitable of it. It starts only after every
    earlier request's work on `keys` (conversation ids) has ended. When the keys
    are idle and `run()` gives a plain result, it ran inline: no task, no await.
    """

    run: Callable[[], Any]
    keys: tuple[str, ...] = ()


@dataclass(slots=True)
class Later:
    """What Work's `run()` returns to answer only when `answer` completes, without holding its keys.

    The keys are released as soon as `run()` returns, so later requests on them
    (a cancel, a status query) go ahead while this one waits: a request whose
    answer comes when a long job ends (ACP's `session/prompt`).
    """

    answer: Awaitable[Any]


Handler = Callable[[Any], Any]
NotificationHandler = Callable[[Any], None]
ErrorMapper = Callable[[Exception], RpcError]


def internal_error(exc: Exception) -> RpcError:
    """The default error mapping: an RpcError answers as it is, anything else is -32603."""
    if isinstance(exc, RpcError):
        return exc
    log.error("internal error", exc_info=exc)
    return RpcError(ErrorCode.INTERNAL_ERROR, "internal error")


@dataclass(slots=True)
class _Batch:
    expected: int = 0
    sealed: bool = False
    responses: list[dict[str, Any]] = field(default_factory=list)


class Connection:
    """Reads requests from a ByteStream and answers on it; see the module docstring."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        framing: Framing | None = None,
        max_message_bytes: int = 16 << 20,
        too_large_code: int = ErrorCode.INTERNAL_ERROR,
        cancel_form: tuple[str, str] = ("$/cancelRequest", "id"),
        answer_cancelled: bool = True,
    ) -> None:
        """`answer_cancelled`: a cancelled request is answered -32800 (LSP) or not at all (MCP).

        `cancel_form`: the notification, and its id param, that tells the
        client a request of ours is given up.
        """
        self._stream = stream
        self._answer_cancelled = answer_cancelled
        self.max_message_bytes = max_message_bytes
        self.outbound = Outbound(
            stream, max_response_bytes=max_message_bytes, too_large_code=too_large_code
        )
        self._decoder = AutoDecoder(max_message_bytes, framing)
        if framing is not None:
            self.outbound.framing = framing
        self._handlers: dict[str, Handler] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        self._map_error: ErrorMapper = internal_error
        self._sequencer = KeyedSequencer()
        # How a request of ours that we give up on is cancelled: (method, id param).
        self._server_requests = ServerRequests(self.outbound.send, cancel_form)
        # Requests running as tasks, by id (a method called as a notification
        # gets a key no id equals: waited for, never cancellable).
        self._inflight: dict[Hashable, anyio.CancelScope] = {}
        self._inflight_done = anyio.Event()
        self._batch_of: dict[RequestId, _Batch] = {}
        self._task_group: TaskGroup | None = None
        # Checked once: a log call per message costs even when it logs nothing.
        self._trace = wire_log.isEnabledFor(logging.DEBUG)

    # --- wiring -------------------------------------------------------------

    def method(self, name: str, handler: Handler) -> None:
        """Route requests of `name` to `handler(params)`; it returns a result or Work."""
        self._handlers[name] = handler

    def notification(self, name: str, handler: NotificationHandler) -> None:
        """Route notifications of `name` to `handler(params)`."""
        self._notifications[name] = handler

    def map_errors(self, mapper: ErrorMapper) -> None:
        """Turn what handlers and their work raise into JSON-RPC errors with `mapper`."""
        self._map_error = mapper

    # --- requests in flight ---------------------------------------------------

    def cancel(self, request_id: RequestId) -> None:
        """Cancel the client's request of that id if it still runs (it answers -32800, or not)."""
        if not valid_id(request_id):
            return
        scope = self._inflight.get(request_id)
        if scope is not None:
            scope.cancel()

    def cancel_all(self) -> None:
        """Cancel every request still running (they answer -32800, or not)."""
        for scope in self._inflight.values():
            scope.cancel()

    async def wait_idle(self) -> None:
        """Return once every request running as a task has ended."""
        while self._inflight:
            await self._inflight_changed()

    def held_keys(self) -> tuple[str, ...]:
        """The keys of every request whose work is not done yet (Work on them all waits for it)."""
        return self._sequencer.held()

    async def request(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """Send a request to the client and wait for its result (see ServerRequests.request)."""
        return await self._server_requests.request(method, params)

    # --- reading ----------------------------------------------------------------

    async def read_loop(self, task_group: TaskGroup) -> None:
        """Read and dispatch until end of input; work that waits runs in `task_group`."""
        self._task_group = task_group
        receive = self._stream.receive
        outbound = self.outbound
        decoder = self._decoder
        while True:
            if outbound.size > 0:
                await outbound.wait_readable_room()
            while len(self._inflight) >= MAX_INFLIGHT:
                await self._inflight_changed()
            data = await receive()
            if not data:
                break
            frames = decoder.feed(data)
            if decoder.framing is not None:
                outbound.framing = decoder.framing
            for frame in frames:
                self._on_frame(frame)
            # Let the tasks this batch started run before reading more.
            await anyio.lowlevel.checkpoint()
        for frame in decoder.finish():
            self._on_frame(frame)
        # Nobody can answer the server's requests any more.
        self._server_requests.close()

    async def _inflight_changed(self) -> None:
        """Wait until a request running as a task ends."""
        # One event for every waiter at once: a new one only once the last was set.
        if self._inflight_done.is_set():
            self._inflight_done = anyio.Event()
        await self._inflight_done.wait()

    def _on_frame(self, frame: bytes | Oversize | BadFrame) -> None:
        if isinstance(frame, Oversize):
            self._send_error(
                None,
                ErrorCode.INVALID_REQUEST,
                "message too large",
                {"limit": self.max_message_bytes, "size": frame.size},
            )
            return
        if isinstance(frame, BadFrame):
            self._send_error(None, ErrorCode.PARSE_ERROR, f"parse error: {frame.reason}")
            return
        try:
            value = from_json(frame)
        except ValueError as exc:
            self._send_error(None, ErrorCode.PARSE_ERROR, f"parse error: {exc}")
            return
        if self._trace:
            trace("<-", value, len(frame))
        if isinstance(value, list):
            self._on_batch(value)
        else:
            self._on_message(value, None)

    def _on_batch(self, values: list[Any]) -> None:
        if not values:
            self._send_error(None, ErrorCode.INVALID_REQUEST, "empty batch")
            return
        batch = _Batch()
        for value in values:
            self._on_message(value, batch)
        batch.sealed = True
        self._maybe_flush_batch(batch)

    def _on_message(self, value: Any, batch: _Batch | None) -> None:
        checked = classify(value)
        if isinstance(checked, Invalid):
            if (
                type(value) is dict
                and "method" not in value
                and self._server_requests.reject(checked.id, checked.reason)
            ):
                return  # a bad answer to our request: that request fails, nothing is sent
            if not checked.answer:
                log.warning("ignoring a malformed notification: %s", checked.reason)
                return
            self._reply(_error(checked.id, ErrorCode.INVALID_REQUEST, checked.reason), batch)
            return
        message = checked.message
        kind = checked.kind
        if kind == "request":
            self._on_request(message["id"], message["method"], message.get("params"), batch)
        elif kind == "notification":
            self._on_notification(message["method"], message.get("params"))
        else:
            try:
                self._server_requests.answer(message)
            except Exception:
                log.exception("cannot take the answer to request %r", message["id"])

    def _on_notification(self, method: str, params: Any) -> None:
        # Nothing a client can put in a notification may end the session.
        try:
            handler = self._notifications.get(method)
            if handler is not None:
                handler(params)
            elif method in self._handlers:
                self._call(object(), method, params, answer=False)
            else:
                log.debug("ignoring notification %s", method)
        except Exception:
            log.exception("notification %s failed", method)

    def _on_request(
        self, msg_id: RequestId, method: str, params: Any, batch: _Batch | None
    ) -> None:
        if msg_id in self._inflight or msg_id in self._batch_of:
            message = f"request id {msg_id!r} is already in use"
            self._reply(_error(msg_id, ErrorCode.INVALID_REQUEST, message), batch)
            return
        if batch is not None:
            batch.expected += 1
            self._batch_of[msg_id] = batch
        if method not in self._handlers:
            self._respond(
                msg_id, _error(msg_id, ErrorCode.METHOD_NOT_FOUND, f"method not found: {method}")
            )
            return
        self._call(msg_id, method, params, answer=True)

    # --- running handlers --------------------------------------------------------

    def _call(self, key: Hashable, method: str, params: Any, *, answer: bool) -> None:
        """Run the handler; answer now, or start a task for work that must wait."""
        keys: tuple[str, ...] = ()
        try:
            result = self._handlers[method](params)
            if type(result) is Work:
                keys = result.keys
                if keys and not all(map(self._sequencer.idle, keys)):
                    self._start(key, method, answer, result.run, None, keys)
                    return
                result = result.run()
            if type(result) is Later:
                self._start(key, method, answer, None, result.answer, ())
                return
            if _awaitable(result):
                self._start(key, method, answer, None, result, keys)
                return
        except Exception as exc:
            self._failed(key, method, answer, exc)
            return
        if answer:
            self._respond(key, {"jsonrpc": "2.0", "id": key, "result": result})

    def _start(
        self,
        key: Hashable,
        method: str,
        answer: bool,
        run: Callable[[], Any] | None,
        awaitable: Awaitable[Any] | None,
        keys: tuple[str, ...],
    ) -> None:
        """Run work in a task, in line behind earlier work on `keys` (taken now, in read order)."""
        assert self._task_group is not None
        scope = anyio.CancelScope()
        self._inflight[key] = scope
        ticket = self._sequencer.ticket(keys) if keys else None
        self._task_group.start_soon(self._run, key, method, answer, run, awaitable, ticket, scope)

    async def _run(
        self,
        key: Hashable,
        method: str,
        answer: bool,
        run: Callable[[], Any] | None,
        awaitable: Awaitable[Any] | None,
        ticket: Ticket | None,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            response: dict[str, Any] | None = None  # stays None when cancelled
            try:
                with scope:
                    if ticket is not None:
                        await ticket.wait()
                    result = run() if run is not None else awaitable
                    if type(result) is Later:
                        if ticket is not None:
                            ticket.release()
                            ticket = None
                        result = result.answer
                    if _awaitable(result):
                        result = await result
                    response = {"jsonrpc": "2.0", "id": key, "result": result}
            except Exception as exc:
                self._failed(key, method, answer, exc)
            else:
                if response is None and answer:
                    if self._answer_cancelled:
                        response = _error(key, ErrorCode.REQUEST_CANCELLED, "request cancelled")
                    else:
                        self._unanswered(key)
                if response is None:
                    log.debug("%s %s cancelled", "request" if answer else "notification", method)
                elif answer:
                    self._respond(key, response)
        finally:
            # After the answer is queued: "response before events" holds for the next holder.
            if ticket is not None:
                ticket.release()
            del self._inflight[key]
            self._inflight_done.set()

    def _failed(self, key: Hashable, method: str, answer: bool, exc: Exception) -> None:
        error = self._map_error(exc)
        if answer:
            self._respond(key, _error(key, error.code, error.message, error.data))
        else:
            log.warning("notification %s failed: %s", method, error.message)

    # --- answering --------------------------------------------------------------

    def _respond(self, msg_id: Any, message: dict[str, Any]) -> None:
        """Answer a request: into its batch's array, or straight to the client."""
        if self._batch_of:
            batch = self._batch_of.pop(msg_id, None)
            if batch is not None:
                batch.responses.append(message)
                self._maybe_flush_batch(batch)
                return
        self.outbound.send(message)

    def _unanswered(self, msg_id: Any) -> None:
        """A request that gets no answer (a cancelled one, in MCP): its batch stops waiting."""
        batch = self._batch_of.pop(msg_id, None)
        if batch is not None:
            batch.expected -= 1
            self._maybe_flush_batch(batch)

    def _reply(self, message: dict[str, Any], batch: _Batch | None) -> None:
        """Answer a message that did not become a request (it has no batch slot yet)."""
        if batch is None:
            self.outbound.send(message)
        else:
            batch.expected += 1
            batch.responses.append(message)

    def _maybe_flush_batch(self, batch: _Batch) -> None:
        if batch.sealed and len(batch.responses) == batch.expected and batch.expected:
            self.outbound.send(batch.responses)
            batch.expected = 0

    def _send_error(self, msg_id: RequestId, code: int, message: str, data: Any = None) -> None:
        self.outbound.send(_error(msg_id, code, message, data))


def _awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    """isawaitable, with the common answers first: a coroutine, or a result dict."""
    kind = type(value)
    return kind is CoroutineType or (kind is not dict and isawaitable(value))


def _error(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """An error response."""
    error: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}
