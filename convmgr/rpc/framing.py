"""Splitting a byte stream into messages: newline-delimited JSON or Content-Length frames."""

from dataclasses import dataclass
from typing import Literal

Framing = Literal["ndjson", "lsp"]

_CRLF2 = b"\r\n\r\n"
_MAX_HEADER_BYTES = 8192


@dataclass(slots=True, frozen=True)
class Oversize:
    """A message over the size limit was skipped; it was never buffered whole."""

    size: int | None


@dataclass(slots=True, frozen=True)
class BadFrame:
    """Bytes that are not a frame (a broken Content-Length header, say)."""

    reason: str


Frame = bytes | Oversize | BadFrame


class NdjsonDecoder:
    """One JSON value per `\\n`-terminated line; blank lines are skipped."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._skipping = False  # inside an oversize line, discarding to its end
        self._skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by this chunk, in order."""
        frames: list[Frame] = []
        start = 0
        size = len(data)
        while start < size:
            newline = data.find(b"\n", start)
            if self._skipping:
                if newline < 0:
                    self._skipped += size - start
                    return frames
                self._skipped += newline - start
                frames.append(Oversize(self._skipped))
                self._skipping = False
                self._skipped = 0
                start = newline + 1
                continue
            if newline < 0:
                self._buf += data[start:]
                if len(self._buf) > self._max:
                    self._skipping = True
                    self._skipped = len(self._buf)
                    self._buf = bytearray()
                return frames
            if self._buf:
                self._buf += data[start:newline]
                line = bytes(self._buf)
                self._buf = bytearray()
            else:
                line = data[start:newline]
            start = newline + 1
            if len(line) > self._max:
                frames.append(Oversize(len(line)))
            elif line.strip():
                frames.append(line)
        return frames

    def pending(self) -> bool:
        """Whether an unterminated line is buffered (reported at end of input)."""
        return bool(self._buf.strip()) or self._skipping

    def finish(self) -> list[Frame]:
        """At end of input: a last line without `\\n` still counts."""
        if self._skipping:
            self._skipping = False
            return [Oversize(self._skipped)]
        line = bytes(self._buf)
        self._buf = bytearray()
        return [line] if line.strip() else []


class LspDecoder:
    """`Content-Length: N` headers, a blank line, then N bytes of body."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._body_len: int | None = None
        self._skip = 0  # bytes of an oversize body still to discard
        self._skip_size = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by this chunk, in order."""
        frames: list[Frame] = []
        view = memoryview(data)
        # A zero-length body is complete as soon as its headers are.
        while view or self._body_len == 0:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                if not self._skip:
                    frames.append(Oversize(self._skip_size))
                continue
            if self._body_len is not None:
                need = self._body_len - len(self._buf)
                self._buf += view[:need]
                view = view[need:]
                if len(self._buf) == self._body_len:
                    frames.append(bytes(self._buf))
                    self._buf = bytearray()
                    self._body_len = None
                continue
            self._buf += view
            view = memoryview(b"")
            frames.extend(self._parse_headers())
            if self._body_len is not None or self._skip:
                rest = bytes(self._buf)
                self._buf = bytearray()
                view = memoryview(rest)
        return frames

    def _parse_headers(self) -> list[Frame]:
        frames: list[Frame] = []
        while True:
            # Blank lines between frames are tolerated.
            stripped = self._buf.lstrip(b"\r\n")
            if len(stripped) != len(self._buf):
                self._buf = bytearray(stripped)
            end = self._buf.find(_CRLF2)
            if end < 0:
                if len(self._buf) > _MAX_HEADER_BYTES:
                    frames.append(BadFrame("header block too long"))
                    self._buf = bytearray()
                return frames
            header = bytes(self._buf[:end])
            del self._buf[: end + 4]
            length = _content_length(header)
            if length is None:
                frames.append(BadFrame("missing or invalid Content-Length header"))
                continue
            if length > self._max:
                self._skip = length
                self._skip_size = length
                return frames
            self._body_len = length
            return frames

    def pending(self) -> bool:
        """Whether a partial frame is buffered."""
        return bool(self._buf.strip()) or self._body_len is not None or self._skip > 0

    def finish(self) -> list[Frame]:
        """At end of input: a truncated frame is reported."""
        if self.pending():
            self._buf = bytearray()
            self._body_len = None
            self._skip = 0
            return [BadFrame("input ended inside a frame")]
        return []


def _content_length(header: bytes) -> int | None:
    length: int | None = None
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        if name.strip().lower() == b"content-length":
            text = value.strip()
            if not text.isdigit():
                return None
            length = int(text)
    return length


class AutoDecoder:
    """Picks the framing from the first non-blank byte: `C` means lsp, else ndjson."""

    def __init__(self, max_bytes: int, framing: Framing | None = None) -> None:
        self._max = max_bytes
        self.framing: Framing | None = framing
        self._inner: NdjsonDecoder | LspDecoder | None = None
        if framing is not None:
            self._inner = self._make(framing)

    def _make(self, framing: Framing) -> NdjsonDecoder | LspDecoder:
        return LspDecoder(self._max) if framing == "lsp" else NdjsonDecoder(self._max)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by this chunk."""
        if self._inner is None:
            stripped = data.lstrip()
            if not stripped:
                return []
            self.framing = "lsp" if stripped[:1] == b"C" else "ndjson"
            self._inner = self._make(self.framing)
            data = stripped
        return self._inner.feed(data)

    def finish(self) -> list[Frame]:
        """Frames left at end of input."""
        return [] if self._inner is None else self._inner.finish()


def encode_frame(body: bytes, framing: Framing) -> bytes:
    """One message, framed."""
    if framing == "lsp":
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    return body + b"\n"
