"""The one ordered outbound queue and the task that writes it to stdout.

Everything the server says goes through `send`, so the order of calls is the
order on the wire. Two limits keep memory bounded without deadlocking a client
that writes all its requests before reading: streaming turns wait above
`stream_limit` (small), while the reader only stops taking requests above
`read_limit` (large), so responses keep being produced while the client writes.
"""

import errno
import logging
import os
from collections import deque
from typing import Any

import anyio
from pydantic_core import to_json

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.framing import Framing, encode_frame

log = logging.getLogger(__name__)

_WRITE_CHUNK = 1 << 20


class Outbound:
    """A byte queue of framed messages, drained to a non-blocking file descriptor."""

    def __init__(
        self,
        fd: int,
        *,
        stream_limit: int = 1 << 20,
        read_limit: int = 64 << 20,
        max_response_bytes: int = 16 << 20,
        too_large_code: int = ErrorCode.INTERNAL_ERROR,
    ) -> None:
        self._fd = fd
        self._max_response = max_response_bytes
        self._too_large_code = too_large_code
        self.framing: Framing = "ndjson"
        self._chunks: deque[bytes] = deque()
        self.size = 0
        self._stream_limit = stream_limit
        self._read_limit = read_limit
        self._data = anyio.Event()
        self._drained = anyio.Event()
        self.closed = False  # the client stopped reading (EPIPE): output is discarded
        self.gone = anyio.Event()  # set when `closed` becomes true

    def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Queue one message (or a batch's array); it is written in the order queued."""
        if self.closed:
            return
        # JSON has no NaN or Infinity: a value an older version stored goes out as null.
        body = to_json(message, inf_nan_mode="null")
        if len(body) > self._max_response and type(message) is dict and "result" in message:
            body = to_json(self._too_large(message, len(body)))
        frame = encode_frame(body, self.framing)
        self._chunks.append(frame)
        self.size += len(frame)
        self._data.set()

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

    def send_raw(self, body: bytes) -> None:
        """Queue an already-encoded message body."""
        if self.closed:
            return
        frame = encode_frame(body, self.framing)
        self._chunks.append(frame)
        self.size += len(frame)
        self._data.set()

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
        """Write queued frames forever; one os.write per drained batch."""
        fd = self._fd
        while True:
            if not self._chunks:
                self._data = anyio.Event()
                await self._data.wait()
                continue
            batch = self._take()
            view = memoryview(batch)
            while view:
                try:
                    written = os.write(fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(fd)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPIPE, errno.EBADF, errno.ECONNRESET):
                        log.error("cannot write to stdout: %s", exc)
                    else:
                        log.info("stdout closed by the client; output is discarded")
                    self._close()
                    return
                view = view[written:]
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
