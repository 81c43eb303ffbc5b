"""The byte stream a connection runs over, and an in-memory pair of them.

A connection needs two things of its transport: the next chunk of input, and a
way to write one chunk of framed output. stdio (stdio.py) is the transport of a
served process; `memory_pipe()` runs a connection in the same process as its
client, as tests do (the MCP SDK's in-memory streams, in bytes).
"""

import math
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    # Not at run time: importing anyio's memory streams costs ~6 ms of every start-up,
    # and only tests use them.
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class ByteStream(Protocol):
    """Both directions of one connection's bytes."""

    async def receive(self) -> bytes:
        """The next chunk of input, whatever its size; b"" at end of input."""
        ...

    async def send(self, data: bytes) -> None:
        """Write all of `data`; raise anyio.BrokenResourceError once the peer stopped reading."""
        ...


class MemoryByteStream:
    """One end of an in-memory pipe: what one end sends, the other receives."""

    def __init__(
        self,
        incoming: "MemoryObjectReceiveStream[bytes]",
        outgoing: "MemoryObjectSendStream[bytes]",
    ) -> None:
        self._incoming = incoming
        self._outgoing = outgoing

    async def receive(self) -> bytes:
        """The next chunk the other end sent; b"" once it closed its output."""
        try:
            return await self._incoming.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""

    async def send(self, data: bytes) -> None:
        """Hand `data` to the other end; BrokenResourceError once it closed its input."""
        try:
            await self._outgoing.send(data)
        except anyio.ClosedResourceError:
            raise anyio.BrokenResourceError from None

    def close_output(self) -> None:
        """End of input for the other end."""
        self._outgoing.close()

    def close_input(self) -> None:
        """Stop reading: the other end's sends fail from now on."""
        self._incoming.close()

    def close(self) -> None:
        """Close both directions."""
        self._incoming.close()
        self._outgoing.close()

    def __enter__(self) -> "MemoryByteStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def memory_pipe(buffer: float = math.inf) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected ends; each direction holds up to `buffer` unread chunks."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](buffer)
    return MemoryByteStream(a_receive, a_send), MemoryByteStream(b_receive, b_send)
