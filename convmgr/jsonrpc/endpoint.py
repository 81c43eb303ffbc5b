"""python-lsp-jsonrpc's Endpoint, behind one seam: the server's own requests and their answers.

convmgr sends requests to its client (`tool/call`, `approval/request`, and the
like, docs/protocol.md §14). The Endpoint numbers them, sends them through the
outbound queue and resolves each one's future with the client's answer. That
is all it is used for, and this module is the only one that touches it. Each
quirk of version 1.1.2 that shaped this, and how convmgr stays clear of it:

Paths left alone:

- Its stream reader is Content-Length only: it swallows newline-delimited JSON
  and hangs, and a bad header can kill it or re-dispatch the previous message.
  framing.py reads both framings on the event loop.
- Its stream writer blocks the thread it runs on, which deadlocks against a
  client that writes everything before reading. outbound.py writes from one
  task, non-blocking.
- Its request dispatch merges a handler's dict result that has a "result" or
  "error" key into the envelope; makes an `async def` handler's coroutine the
  "result" (never awaited); runs a returned callable on a private thread pool;
  answers an internal error with JsonRpcInternalError, whose code is -32602
  (it should be -32603); and on `$/cancelRequest` calls future.cancel(), after
  which the request is never answered. connection.py routes the client's
  requests itself: it builds every envelope, awaits async work on the event
  loop, answers -32603 and -32800 itself, and leaves cancellation to the
  dialect. Nothing is ever submitted to the pool, so none of its threads start.

The path used, guarded:

- consume() silently drops messages without "jsonrpc", batches and bad shapes,
  and raises KeyError on {"jsonrpc": "2.0"}: only answers that
  messages.classify found valid reach it, "jsonrpc" set, one at a time.
- An error answer without a message, with an empty message or code 0, or with
  a key other than code/message/data, makes consume() raise (AttributeError
  or TypeError out of JsonRpcException.from_dict): it is given a cleaned
  error, and the caller gets the client's own code and message from here.
- An answer to an id it does not know is dropped with a warning of its own:
  answers are checked against our table of waiting ids first, so an unknown,
  a second or a late answer is logged here, once, and the Endpoint logs only
  at debug level (its request path logged every error with a traceback).
- future.cancel() sends `$/cancelRequest`, then raises InvalidStateError in
  its own done callback (logged as an error by concurrent.futures) and keeps
  the id waiting, so a late answer raises InvalidStateError out of consume():
  a request given up on is settled with an answer of our own instead (and the
  `$/cancelRequest` is sent from here), so the Endpoint forgets the id.
- Its futures are concurrent.futures ones, resolved in the thread that calls
  consume(). That is the event loop's thread, so a done callback may set an
  anyio.Event directly: no thread hop per answer.
"""

import itertools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import anyio
from pylsp_jsonrpc.endpoint import Endpoint

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.errors import ClientGone, RpcError

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]


class _Waiting:
    """One request of ours without an answer yet."""

    __slots__ = ("answered", "error", "gone")

    def __init__(self, future: "Future[Any]") -> None:
        self.answered = anyio.Event()
        self.error: RpcError | None = None  # the client's error, as it sent it
        self.gone = False  # settled because the client's input ended
        future.add_done_callback(self._resolved)

    def _resolved(self, future: "Future[Any]") -> None:
        self.answered.set()


class ServerRequests:
    """The server's requests to the client, with ids "s1", "s2", ...; see the module docstring."""

    def __init__(
        self, send: Send, cancel_form: tuple[str, str] = ("$/cancelRequest", "id")
    ) -> None:
        self._send = send
        # The dialect's cancellation notification: its method and the param naming the id.
        self._cancel_method, self._cancel_param = cancel_form
        self._numbers = itertools.count(1)
        self._last_id = ""
        # An empty method table: client requests never go through the Endpoint.
        self._endpoint = Endpoint({}, send, id_generator=self._new_id, max_workers=1)
        self._waiting: dict[str, _Waiting] = {}
        self._closed = False

    def _new_id(self) -> str:
        self._last_id = f"s{next(self._numbers)}"
        return self._last_id

    async def request(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """Send a request and wait for its result.

        Raises RpcError when the client answers with an error, and ClientGone when
        its input has ended (no answer can come). When the caller is cancelled, the
        client is sent the cancel notification (cancel_form) and a later answer is ignored.
        """
        if self._closed:
            raise ClientGone(f"{method}: the client's input has ended")
        future = self._endpoint.request(method, params)
        msg_id = self._last_id
        waiting = self._waiting[msg_id] = _Waiting(future)
        try:
            await waiting.answered.wait()
        except BaseException:
            if self._waiting.pop(msg_id, None) is not None:
                self._send(
                    {
                        "jsonrpc": "2.0",
                        "method": self._cancel_method,
                        "params": {self._cancel_param: msg_id},
                    }
                )
                self._settle(msg_id, "cancelled by the server")
            raise
        if waiting.gone:
            raise ClientGone(f"{method}: the client's input has ended")
        if waiting.error is not None:
            raise waiting.error
        return future.result()

    def answer(self, message: dict[str, Any]) -> None:
        """An answer from the client (a valid response): resolve its request, or log it."""
        msg_id = message["id"]
        waiting = self._waiting.pop(msg_id, None) if isinstance(msg_id, str) else None
        if waiting is None:
            log.warning(
                "ignoring an answer to request id %r: nothing is waiting for it "
                "(unknown, already answered or given up)",
                msg_id,
            )
            return
        if "error" not in message:
            self._endpoint.consume({"jsonrpc": "2.0", "id": msg_id, "result": message["result"]})
            return
        error = message["error"]
        text = error.get("message")
        waiting.error = RpcError(
            error["code"], text if isinstance(text, str) else "", error.get("data")
        )
        self._settle(msg_id, waiting.error.message)

    def reject(self, msg_id: object, reason: str) -> bool:
        """A malformed answer to one of our requests: it fails now; whether one was waiting.

        Waiting out the timeout would gain nothing: no valid answer follows a bad one.
        """
        if not isinstance(msg_id, str):
            return False
        waiting = self._waiting.pop(msg_id, None)
        if waiting is None:
            return False
        log.warning("a malformed answer to request %s: %s", msg_id, reason)
        waiting.error = RpcError(ErrorCode.INVALID_REQUEST, f"malformed answer: {reason}")
        self._settle(msg_id, waiting.error.message)
        return True

    def close(self) -> None:
        """The client's input has ended: every waiting request, and every later one, fails."""
        self._closed = True
        waiting, self._waiting = self._waiting, {}
        for msg_id, item in waiting.items():
            item.gone = True
            self._settle(msg_id, "the client's input has ended")

    def _settle(self, msg_id: str, message: str) -> None:
        """Resolve a request with an error the Endpoint can parse, so it forgets the id."""
        self._endpoint.consume(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "error": {"code": ErrorCode.INTERNAL_ERROR, "message": message or "error"},
            }
        )
