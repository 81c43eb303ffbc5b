"""Splitting a byte stream into messages: newline-delimited JSON or Content-Length frames."""

import re
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


_HEADER, _BODY, _SKIP = 0, 1, 2


class LspDecoder:
    """`Content-Length: N` headers, a blank line, then N bytes of body.

    Bad input costs one error per bad frame and never the frames after it:

    - A bad header block (no valid Content-Length, or no blank line within 8 KiB) is one
      BadFrame. Its body, of unknown length, is skipped up to the next `Content-Length:`
      header line, where decoding resynchronises.
    - Bytes after a body that do not begin like a header field (`name:`) are the rest of a
      body whose Content-Length was too small. That body already got its error (it is
      broken JSON), so they are skipped the same way without another one.
    - A length over the limit is one Oversize, reported as soon as its header is read. The
      announced length is then skipped, unless a `Content-Length:` header line comes first:
      a JSON body cannot hold one, so the length was wrong (`Content-Length: 10^20` must
      not swallow the rest of the input).

    A resync point is a line `Content-Length:` + a value without CR, LF or `"` + CRLF. Inside
    a JSON text that cannot occur (a string cannot hold a raw CR), so skipping to one never
    stops inside a valid JSON body; a non-JSON body that holds one costs one more error.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._state = _HEADER
        self._body_len = 0
        # In _SKIP: oversize body bytes still to discard, or -1 (skip to the next resync point).
        self._skip = 0
        # In _SKIP: bytes at the start of the buffer already counted, kept in case they
        # begin a resync point that the next read completes.
        self._counted = 0
        # The last thing read was a whole frame: what follows should be a header.
        self._after_frame = False
        # Bad input was skipped since the last good header: a header block that then runs
        # too long belongs to it and is not reported again.
        self._in_error = False
        # No blank line (CRLFCRLF) starts in the buffer before this index, past the read
        # position: a header block is never searched twice, however it is split.
        self._no_blank = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by this chunk, in order."""
        frames: list[Frame] = []
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0
        while True:
            state = self._state
            if state == _BODY:
                end = pos + self._body_len
                if end > size:
                    break
                frames.append(bytes(buf[pos:end]))
                pos = end
                self._state = _HEADER
                self._after_frame = True
            elif state == _HEADER:
                # Blank lines between frames are tolerated.
                while pos < size and buf[pos] in b"\r\n":
                    pos += 1
                if pos == size:
                    break
                limit = pos + _MAX_HEADER_BYTES + 4
                end = buf.find(_CRLF2, max(pos, self._no_blank), limit)
                if end < 0:
                    self._no_blank = min(size, limit) - 3
                    if size < limit:
                        break  # wait for the rest of the header block
                    pos = self._bad_header(buf, pos, -1, frames)
                    continue
                length = _content_length(buf[pos:end])
                if length is None:
                    pos = self._bad_header(buf, pos, end, frames)
                    continue
                pos = end + 4
                self._after_frame = self._in_error = False
                if length <= self._max:
                    self._state = _BODY
                    self._body_len = length
                else:
                    frames.append(Oversize(None if length >= _UNCOUNTABLE else length))
                    self._state = _SKIP
                    self._skip = length
                    self._counted = 0
            else:
                skip = self._skip
                limit = size if skip < 0 else min(size, pos + self._counted + skip)
                line = _find_length_line(buf, pos, limit)
                if line >= 0:
                    # Go on at the resync point; inside an oversize body, it means the
                    # announced length was wrong (see the class docstring).
                    pos = line
                    self._state = _HEADER
                    continue
                if skip >= 0:
                    skip -= limit - pos - self._counted
                    self._skip = skip
                    if not skip:
                        pos = limit
                        self._state = _HEADER
                        self._after_frame = True
                        continue
                # Keep only what may begin a resync point: memory stays bounded.
                keep = max(pos, size - _LENGTH_LINE_MAX)
                self._counted = size - keep
                pos = keep
                break
        del buf[:pos]
        self._no_blank -= pos
        return frames

    def _bad_header(self, buf: bytearray, start: int, end: int, frames: list[Frame]) -> int:
        """Report the header block at `start` (ends at `end`; -1: too long); where to go on."""
        resume = -1 if end < 0 else _resume_point(buf, start, end)
        prefix_end = resume if resume >= 0 else (end if end >= 0 else len(buf))
        if end < 0 and self._in_error:
            pass  # skipping on from a resync point inside the bad input already reported
        elif not self._after_frame or _FIELD_START.match(buf, start, prefix_end):
            frames.append(BadFrame(_TOO_LONG if end < 0 else _BAD_LENGTH))
        self._after_frame = False
        self._in_error = True
        if resume >= 0:
            return resume
        self._state = _SKIP
        self._skip = -1
        self._counted = 0
        return start + 1 if end < 0 else end + 4

    def pending(self) -> bool:
        """Whether a partial frame that is still owed an answer is buffered."""
        if self._state != _HEADER:
            return self._state == _BODY  # a skipped frame was answered when its header was read
        rest = self._buf.strip()
        return bool(rest) and (not self._after_frame or _FIELD_START.match(rest) is not None)

    def finish(self) -> list[Frame]:
        """At end of input: a truncated frame is reported."""
        frames: list[Frame] = [BadFrame("input ended inside a frame")] if self.pending() else []
        self._buf = bytearray()
        self._state = _HEADER
        self._after_frame = self._in_error = False
        self._no_blank = 0
        return frames


_TOO_LONG = "header block too long"
_BAD_LENGTH = "missing or invalid Content-Length header"
# `int()` refuses very long digit strings; a length this long is over any limit anyway.
_MAX_DIGITS = 30
_UNCOUNTABLE = 10**_MAX_DIGITS
_FAST_PREFIX = b"Content-Length: "
# A resync point (see LspDecoder): the value is bounded so a search looks back a bounded way.
_LENGTH_LINE = re.compile(rb'content-length:[^\r\n"]{0,64}\r\n', re.IGNORECASE)
_LENGTH_LINE_MAX = len(b"content-length:") + 64 + 2
# How a header field begins: a token, then a colon.
_FIELD_START = re.compile(rb"[ \t]*[-!#$%&'*+.^_`|~0-9A-Za-z]+[ \t]*:")


def _content_length(header: bytes | bytearray) -> int | None:
    if header[:16] == _FAST_PREFIX:
        text = header[16:]
        if text.isdigit() and len(text) < 19:
            return int(text)
    length: int | None = None
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        if name.strip().lower() == b"content-length":
            length = _length_value(value)
            if length is None:
                return None
    return length


def _length_value(value: bytes | bytearray) -> int | None:
    text = value.strip()
    if not text.isdigit():
        return None
    digits = text.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= _MAX_DIGITS else _UNCOUNTABLE


def _find_length_line(buf: bytearray, start: int, end: int) -> int:
    """Where the first resync point wholly inside buf[start:end] begins, or -1."""
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos, end)
        if eol < 0:
            return -1
        # Finding CRLF first is memchr-fast; the pattern is tried only in front of one.
        match = _LENGTH_LINE.search(buf, max(start, eol + 2 - _LENGTH_LINE_MAX), eol + 2)
        if match is not None:
            return match.start()
        pos = eol + 2


def _resume_point(buf: bytearray, start: int, end: int) -> int:
    """In a bad header block, where a valid header begins (a frame glued to garbage), or -1."""
    # Every line after the last bad one is sound, so the first resync point from that
    # line on with a valid value begins a valid header.
    search = start + 1
    offset = start
    for line in buf[start:end].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or (name.strip().lower() == b"content-length" and _length_value(value) is None):
            search = offset + 1
        offset += len(line) + 2
    while True:
        point = _find_length_line(buf, search, end + 2)
        if point < 0:
            return -1
        value = buf[point + len(b"content-length:") : buf.find(b"\r\n", point)]
        if _length_value(value) is not None:
            return point
        search = point + 1


class AutoDecoder:
    """Picks the framing from the first non-blank byte: `C` (or `c`) means lsp, else ndjson."""

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
            # Header names are case-insensitive; no JSON text starts with a letter c.
            self.framing = "lsp" if stripped[:1] in (b"C", b"c") else "ndjson"
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
