"""One JSON-RPC session over a pair of file descriptors.

A reader task frames and validates input and feeds python-lsp-jsonrpc's
Endpoint on the event-loop thread; cheap handlers answer inline, long ones run
as tasks whose results resolve the Endpoint's futures. Cancellation, batches
and invalid input are handled here, before the Endpoint sees anything.
"""

import logging
import os
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic_core import from_json
from pylsp_jsonrpc.endpoint import Endpoint
from pylsp_jsonrpc.exceptions import JsonRpcException, JsonRpcRequestCancelled

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.framing import AutoDecoder, BadFrame, Framing, Oversize
from convmgr.jsonrpc.messages import Invalid, RequestId, classify, valid_id
from convmgr.jsonrpc.outbound import Outbound
from convmgr.jsonrpc.sequencer import KeyedSequencer

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
MAX_INFLIGHT = 1024  # deferred requests at once; the reader waits beyond this
# The cancellation notifications and the param naming the request they cancel.
_CANCEL_KEYS = {"$/cancelRequest": "id", "notifications/cancelled": "requestId"}


@dataclass(slots=True)
class Deferred:
    """A handler's answer when the work must await: run `work` in a task.

    `keys` name the conversations it touches; it starts after earlier work on them.
    """

    work: Callable[[], Awaitable[Any]]
    keys: tuple[str, ...] = ()


Handler = Callable[[Any], Any]
NotificationHandler = Callable[[Any], None]


@dataclass(slots=True)
class _Batch:
    expected: int = 0
    sealed: bool = False
    responses: list[dict[str, Any]] = field(default_factory=list)


class Connection:
    """Reads requests from `in_fd`, answers on `out_fd`; see the module docstring."""

    def __init__(
        self,
        in_fd: int,
        out_fd: int,
        *,
        framing: Framing | None = None,
        max_message_bytes: int = 16 << 20,
        too_large_code: int = ErrorCode.INTERNAL_ERROR,
    ) -> None:
        self._in_fd = in_fd
        self.max_message_bytes = max_message_bytes
        self.outbound = Outbound(
            out_fd, max_response_bytes=max_message_bytes, too_large_code=too_large_code
        )
        self._decoder = AutoDecoder(max_message_bytes, framing)
        if framing is not None:
            self.outbound.framing = framing
        self._handlers: dict[str, Handler] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        # The Endpoint routes through this dict, which method() fills in.
        self._dispatch: dict[str, Callable[[Any], Any]] = {}
        self.endpoint = Endpoint(self._dispatch, self._consume_outgoing, max_workers=1)
        self.sequencer = KeyedSequencer()
        self._inflight: dict[Hashable, anyio.CancelScope] = {}
        self._inflight_done = anyio.Event()
        self._batch_of: dict[RequestId, _Batch] = {}
        self._task_group: TaskGroup | None = None
        self._current_id: RequestId = None
        self.eof = anyio.Event()

    # --- wiring -------------------------------------------------------------

    def method(self, name: str, handler: Handler) -> None:
        """Route requests of `name` to `handler(params)`; it returns a result or Deferred."""
        self._handlers[name] = handler
        self._dispatch[name] = self._wrap(handler)

    def notification(self, name: str, handler: NotificationHandler) -> None:
        """Route notifications of `name` to `handler(params)`."""
        self._notifications[name] = handler

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification to the client, after everything queued before it."""
        self.outbound.send({"jsonrpc": "2.0", "method": method, "params": params})

    @property
    def inflight(self) -> int:
        """How many deferred requests are unanswered."""
        return len(self._inflight)

    async def wait_idle(self) -> None:
        """Return once every deferred request has been answered."""
        while self._inflight:
            self._inflight_done = anyio.Event()
            await self._inflight_done.wait()

    def cancel_all(self) -> None:
        """Cancel every unanswered deferred request (they answer -32800)."""
        for scope in self._inflight.values():
            scope.cancel()

    # --- tasks ----------------------------------------------------------------

    async def read_loop(self, task_group: TaskGroup) -> None:
        """Read and dispatch until end of input; deferred work runs in `task_group`."""
        self._task_group = task_group
        fd = self._in_fd
        outbound = self.outbound
        while True:
            if outbound.size > 0:
                await outbound.wait_readable_room()
            while len(self._inflight) >= MAX_INFLIGHT:
                await self._wait_inflight_below()
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            except OSError as exc:
                log.error("cannot read stdin: %s", exc)
                break
            if not data:
                break
            frames = self._decoder.feed(data)
            if self._decoder.framing is not None:
                outbound.framing = self._decoder.framing
            for frame in frames:
                self._on_frame(frame)
            # Let the tasks this batch started run before reading more.
            await anyio.lowlevel.checkpoint()
        for frame in self._decoder.finish():
            self._on_frame(frame)
        self.eof.set()

    async def _wait_inflight_below(self) -> None:
        self._inflight_done = anyio.Event()
        await self._inflight_done.wait()

    # --- incoming -------------------------------------------------------------

    def _on_frame(self, frame: bytes | Oversize | BadFrame) -> None:
        if isinstance(frame, Oversize):
            self._send_error(None, ErrorCode.INVALID_REQUEST, "message too large", frame.size)
            return
        if isinstance(frame, BadFrame):
            self._send_error(None, ErrorCode.PARSE_ERROR, f"parse error: {frame.reason}")
            return
        try:
            value = from_json(frame)
        except ValueError as exc:
            self._send_error(None, ErrorCode.PARSE_ERROR, f"parse error: {exc}")
            return
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
            if not checked.answer:
                log.warning("ignoring a malformed notification: %s", checked.reason)
                return
            self._reply(
                {
                    "jsonrpc": "2.0",
                    "id": checked.id,
                    "error": {"code": ErrorCode.INVALID_REQUEST, "message": checked.reason},
                },
                batch,
            )
            return
        message = checked.message
        if checked.kind == "notification":
            self._on_notification(message["method"], message.get("params"))
            return
        if checked.kind == "response":
            # The Endpoint keeps the ids of the requests convmgr sent; it would
            # drop any other response silently.
            if message["id"] not in self.endpoint._server_request_futures:
                log.warning("ignoring a response to unknown request id %r", message["id"])
                return
            self.endpoint.consume(message)
            return
        msg_id = message["id"]
        if msg_id in self._inflight or msg_id in self._batch_of:
            self._reply(
                {
                    "jsonrpc": "2.0",
                    "id": msg_id,
                    "error": {
                        "code": ErrorCode.INVALID_REQUEST,
                        "message": f"request id {msg_id!r} is already in use",
                    },
                },
                batch,
            )
            return
        if batch is not None:
            batch.expected += 1
            self._batch_of[msg_id] = batch
        if message["method"] not in self._handlers:
            self._consume_outgoing(
                {
                    "jsonrpc": "2.0",
                    "id": msg_id,
                    "error": {
                        "code": ErrorCode.METHOD_NOT_FOUND,
                        "message": f"method not found: {message['method']}",
                    },
                }
            )
            return
        self._current_id = msg_id
        self.endpoint.consume(message)

    def _on_notification(self, method: str, params: Any) -> None:
        # Nothing a client can put in a notification may end the session.
        try:
            self._dispatch_notification(method, params)
        except Exception:
            log.exception("notification %s failed", method)

    def _dispatch_notification(self, method: str, params: Any) -> None:
        if method in _CANCEL_KEYS:
            target = params.get(_CANCEL_KEYS[method]) if isinstance(params, dict) else None
            if target is None or not valid_id(target):
                log.warning("ignoring %s without a valid request id", method)
                return
            scope = self._inflight.get(target)
            if scope is not None:
                scope.cancel()
            return
        if method in self._handlers:
            self._run_unanswered(method, params)
            return
        handler = self._notifications.get(method)
        if handler is None:
            log.debug("ignoring notification %s", method)
            return
        handler(params)

    # --- answering --------------------------------------------------------------

    def _wrap(self, handler: Handler) -> Callable[[Any], Any]:
        def run(params: Any) -> Any:
            try:
                result = handler(params)
            except RpcError as exc:
                raise JsonRpcException(exc.message, exc.code, exc.data) from None
            except Exception:
                log.exception("internal error")
                raise JsonRpcException("internal error", ErrorCode.INTERNAL_ERROR) from None
            if isinstance(result, Deferred):
                return self._defer(result)
            # Always wrapped: the Endpoint would merge a bare dict with a
            # "result" or "error" key into the response envelope.
            return {"result": result}

        return run

    def _run_unanswered(self, method: str, params: Any) -> None:
        """A method called as a notification: carried out, never answered (JSON-RPC 2.0)."""

        def report(future: Future[Any]) -> None:
            exc = future.exception()
            if exc is not None:
                log.warning("notification %s failed: %s", method, exc)

        try:
            result = self._handlers[method](params)
        except Exception as exc:
            log.warning("notification %s failed: %s", method, exc)
            return
        if isinstance(result, Deferred):
            # A key no request id can equal: it is waited for at end of input,
            # but cannot be cancelled (it has no id to name).
            future = self._start(result, object())
            future.add_done_callback(report)

    def _defer(self, deferred: Deferred) -> Future[Any]:
        return self._start(deferred, self._current_id)

    def _start(self, deferred: Deferred, key: Hashable) -> Future[Any]:
        assert self._task_group is not None
        future: Future[Any] = Future()
        scope = anyio.CancelScope()
        self._inflight[key] = scope
        ticket = self.sequencer.ticket(deferred.keys) if deferred.keys else None
        self._task_group.start_soon(self._run_deferred, key, deferred, future, scope, ticket)
        return future

    async def _run_deferred(
        self,
        msg_id: Hashable,
        deferred: Deferred,
        future: Future[Any],
        scope: anyio.CancelScope,
        ticket: Any,
    ) -> None:
        try:
            with scope:
                if ticket is not None:
                    await ticket.wait()
                result = await deferred.work()
                future.set_result({"result": result})
                return
            future.set_exception(JsonRpcRequestCancelled())
        except RpcError as exc:
            future.set_exception(JsonRpcException(exc.message, exc.code, exc.data))
        except Exception:
            log.exception("internal error")
            future.set_exception(JsonRpcException("internal error", ErrorCode.INTERNAL_ERROR))
        finally:
            if ticket is not None:
                ticket.release()
            del self._inflight[msg_id]
            self._inflight_done.set()

    def _consume_outgoing(self, message: dict[str, Any]) -> None:
        """The Endpoint's consumer: responses of a batch are collected, the rest sent."""
        if "method" not in message:
            batch = self._batch_of.pop(message.get("id"), None)
            if batch is not None:
                batch.responses.append(message)
                self._maybe_flush_batch(batch)
                return
        self.outbound.send(message)

    def _reply(self, message: dict[str, Any], batch: _Batch | None) -> None:
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
        error: dict[str, Any] = {"code": int(code), "message": message}
        if data is not None:
            error["data"] = data
        self.outbound.send({"jsonrpc": "2.0", "id": msg_id, "error": error})
