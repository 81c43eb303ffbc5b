"""The stdio transport: the protocol's bytes on two non-blocking file descriptors.

Reads take whatever one os.read returns (up to 64 KiB), so the framing sees a
batch of messages at a time; the outbound queue hands over one drained batch
per send, which is one os.write unless the pipe is full. Nothing here hops to
a thread: the event loop waits for the descriptors themselves.
"""

import errno
import logging
import os

import anyio

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
# The reader went away: output has nowhere to go, which is no error of ours.
_GONE = (errno.EPIPE, errno.EBADF, errno.ECONNRESET)


class StdioStream:
    """A ByteStream on `in_fd` and `out_fd`, both already non-blocking."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self._in_fd = in_fd
        self._out_fd = out_fd

    async def receive(self) -> bytes:
        """What one read returns; b"" at end of input (or when input cannot be read)."""
        fd = self._in_fd
        while True:
            try:
                return os.read(fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(fd)
            except OSError as exc:
                log.error("cannot read stdin: %s", exc)
                return b""

    async def send(self, data: bytes) -> None:
        """Write all of `data`; BrokenResourceError when stdout is closed or broken."""
        fd = self._out_fd
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    log.info("stdout closed by the client; output is discarded")
                else:
                    log.error("cannot write to stdout: %s", exc)
                raise anyio.BrokenResourceError from exc
            view = view[written:]
