"""The one ordered outbound queue and the task that writes it to the transport.

Everything the server says goes through `send`, so the order of calls is the
order on the wire. Two limits keep memory bounded without deadlocking a client
that writes all its requests before reading: streaming turns wait above
`stream_limit` (small), while the reader only stops taking requests above
`read_limit` (large), so responses keep being produced while the client writes.
"""

import logging
from collections import deque
from typing import Any

import anyio
from pydantic_core import to_json

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.framing import Framing, encode_frame
from convmgr.jsonrpc.messages import trace, wire_log
from convmgr.jsonrpc.transport import ByteStream

log = logging.getLogger(__name__)

_WRITE_CHUNK = 1 << 20


class Outbound:
    """A byte queue of framed messages, drained to the transport one batch at a time."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        stream_limit: int = 1 << 20,
        read_limit: int = 64 << 20,
        max_response_bytes: int = 16 << 20,
        too_large_code: int = ErrorCode.INTERNAL_ERROR,
    ) -> None:
        self._stream = stream
        self._max_response = max_response_bytes
        self._too_large_code = too_large_code
        self.framing: Framing = "ndjson"
        self._chunks: deque[bytes] = deque()
        self.size = 0
        self._stream_limit = stream_limit
        self._read_limit = read_limit
        self._data = anyio.Event()
        self._drained = anyio.Event()
        self.closed = False  # the client stopped reading: output is discarded
        self.gone = anyio.Event()  # set when `closed` becomes true
        # Checked once: a log call per message costs even when it logs nothing.
        self._trace = wire_log.isEnabledFor(logging.DEBUG)

    def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Queue one message (or a batch's array); it is written in the order queued."""
        if self.closed:
            return
        # JSON has no NaN or Infinity: a value an older version stored goes out as null.
        try:
            body = to_json(message, inf_nan_mode="null")
        except ValueError:
            body = to_json(_serializable(message), inf_nan_mode="null")
        if len(body) > self._max_response:
            if type(message) is dict and "result" in message:
                body = to_json(self._too_large(message, len(body)))
            elif type(message) is list:
                body = self._fit_batch(message)
        frame = encode_frame(body, self.framing)
        if self._trace:
            trace("->", message, len(body))
        chunks = self._chunks
        if not chunks:
            # The writer waits only on an empty queue: the first frame wakes it,
            # the frames queued behind it need not (~3 % of a streamed delta's cost).
            self._data.set()
        chunks.append(frame)
        self.size += len(frame)

    def _too_large(self, response: dict[str, Any], size: int) -> dict[str, Any]:
        """The error that replaces a result over the limit (methods that page cut theirs to fit)."""
        limit = self._max_response
        log.warning("response to %r is %d bytes, over the limit of %d", response["id"], size, limit)
        return {
            "jsonrpc": "2.0",
            "id": response["id"],
            "error": {
                "code": self._too_large_code,
                "message": f"the response would be {size} bytes, over --max-message-bytes {limit}",
                "data": {"limit": limit, "size": size},
            },
        }

    def _fit_batch(self, responses: list[dict[str, Any]]) -> bytes:
        """A batch's array within the limit: its largest results become too-large errors."""
        bodies = [to_json(response, inf_nan_mode="null") for response in responses]
        by_size = sorted(range(len(bodies)), key=lambda n: len(bodies[n]), reverse=True)
        total = sum(map(len, bodies)) + len(bodies) + 1
        for n in by_size:
            if total <= self._max_response:
                break
            if "result" not in responses[n]:
                continue
            replaced = to_json(self._too_large(responses[n], len(bodies[n])))
            total += len(replaced) - len(bodies[n])
            bodies[n] = replaced
        return b"[" + b",".join(bodies) + b"]"

    def congested(self) -> bool:
        """Whether a streaming producer should wait_ready() before sending more."""
        return self.size > self._stream_limit and not self.closed

    async def wait_ready(self) -> None:
        """Wait while more than `stream_limit` bytes are queued (backpressure for events)."""
        while self.size > self._stream_limit and not self.closed:
            await self._drained.wait()

    async def wait_readable_room(self) -> None:
        """Wait while more than `read_limit` bytes are queued (the reader pauses)."""
        while self.size > self._read_limit and not self.closed:
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or the client is gone)."""
        while self.size and not self.closed:
            await self._drained.wait()

    async def run(self) -> None:
        """Write queued frames until the client stops reading; one send per drained batch."""
        send = self._stream.send
        while True:
            if not self._chunks:
                self._data = anyio.Event()
                await self._data.wait()
                continue
            batch = self._take()
            try:
                await send(batch)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._close()
                return
            self.size -= len(batch)
            self._notify_drained()
            # Let producers run between batches so a fast stream stays fair.
            await anyio.lowlevel.checkpoint()

    def _take(self) -> bytes:
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks.popleft()
        parts = []
        total = 0
        while chunks and total < _WRITE_CHUNK:
            part = chunks.popleft()
            parts.append(part)
            total += len(part)
        return b"".join(parts)

    def _notify_drained(self) -> None:
        self._drained.set()
        self._drained = anyio.Event()

    def _close(self) -> None:
        self.closed = True
        self.gone.set()
        self._chunks.clear()
        self.size = 0
        self._notify_drained()


def _serializable(message: Any) -> Any:
    """The message with each result that is not JSON replaced by an internal error."""
    if type(message) is list:
        return [_serializable(item) for item in message]
    try:
        to_json(message, inf_nan_mode="null")
    except ValueError:
        if type(message) is not dict or "result" not in message:
            raise
        log.exception("the result for request %r is not JSON", message["id"])
        return {
            "jsonrpc": "2.0",
            "id": message["id"],
            "error": {"code": ErrorCode.INTERNAL_ERROR, "message": "internal error"},
        }
    return message
