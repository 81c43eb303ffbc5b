"""The event-stream splitter of the HTTP providers.

Server-sent events are split by `SSEDecoder`, not httpx-sse, because
httpx-sse fell short on speed, where the issue's 10 % budget is tightest: a
turn of 2,000 deltas sent back to back. For each network read httpx-sse runs
httpx's text decoder, then hands on lines and events one at a time through
three more async generators, building a `ServerSentEvent` for each: 8-11 % of
convmgr's CPU in that turn (py-spy), and 1.9 us per event against 0.9 us for
`SSEDecoder` even without the generator hops. `SSEDecoder` takes the raw bytes
of a read and returns all the events they complete in one list. With it (and
the events of a read handed on together, and the JSON parsing in http.py) that
turn's end-to-end overhead in bench/bench_http_e2e.py went from 16-32 % to
5-9 % (it varies with the machine's load). Unlike httpx-sse, it does not hold
back an event whose blank line ends in a bare `\r` at the end of a read.

The work is linear in the bytes read and what is held is bounded. The start of
an unfinished line is kept as the reads that brought it, and the `data` lines
of an unfinished event as a list, each joined once when it ends: joining them
again on every read or line made a long event quadratic (8 MiB of data lines
took 19 s, 64 MiB did not end, and every other conversation waited). An event
is refused (`EventTooLarge`) as soon as more than `max_event_bytes` of it has
been read; its size is counted from the raw bytes, a read at a time (a count
per line would slow every event down).
"""

DEFAULT_MAX_EVENT_BYTES = 16 << 20


class EventTooLarge(Exception):
    """An event of the stream is larger than the limit; `events` are those completed before it."""

    def __init__(self, limit: int, events: list[tuple[str, str]]) -> None:
        super().__init__(f"provider event larger than {limit} bytes")
        self.limit = limit
        self.events = events


class SSEDecoder:
    """Splits an event stream into (event, data) pairs, whatever its chunking.

    The rules are the WHATWG ones: lines end with `\r\n`, `\r` or `\n`; a
    blank line dispatches the event if it had a `data` field (several `data`
    lines join with `\n`); lines starting with `:` are comments; a field with
    no colon has an empty value; one space after the colon is dropped; the
    event name defaults to "message"; a leading byte order mark is skipped; an
    event cut off by the end of the stream (no blank line) is not dispatched.
    `id` and `retry` are kept (`last_event_id`, `retry_ms`) though nothing
    reconnects with them: a broken stream is retried from the start.

    An event is all the lines up to its blank line; one of more than
    `max_event_bytes` raises `EventTooLarge`, the moment that many are read.
    """

    __slots__ = (
        "_cr",
        "_data",
        "_event",
        "_held",
        "_parts",
        "_started",
        "_tail",
        "last_event_id",
        "max_event_bytes",
        "retry_ms",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._tail: list[bytes] = []  # the start of a line that has not ended yet, as read
        self._held = 0  # bytes read since the last blank line (the unfinished event)
        self._cr = False  # the last read ended with \r (a \n next is part of it)
        self._started = False
        self._event = ""
        self._data: str | None = None  # the first data line; None: no data field yet
        self._parts: list[str] | None = None  # every data line, once there are two
        self.last_event_id = ""
        self.retry_ms: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes read of the unfinished event, its unfinished line included (at most the limit)."""
        return self._held

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events that the bytes of one read complete (name, data); EventTooLarge."""
        if not chunk:
            return []
        if self._cr and chunk[0] == 0x0A:  # the \n of a \r\n cut between two reads
            chunk = chunk[1:]
            if not chunk:
                self._cr = False
                return []
        if 0x0D in chunk:
            self._cr = chunk[-1] == 0x0D
            # One line end for all: \r\n first, so that it stays one line end.
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._cr = False
        held = self._held + len(chunk)
        end = chunk.rfind(0x0A)
        tail = self._tail
        if end < 0:
            tail.append(chunk)
            self._held = held
            if held > self.max_event_bytes:
                self._give_up()
                raise EventTooLarge(self.max_event_bytes, [])
            return []
        if tail:
            tail.append(chunk)
            chunk = b"".join(tail)
            end = chunk.rfind(0x0A)  # in the bytes just read: the tail has no \n
            tail.clear()
        size = len(chunk)
        if end + 1 < size:
            tail.append(chunk[end + 1 :])
        cut = -1
        if held > self.max_event_bytes:
            # Some event this read ends or continues may be too large: find the
            # first, and read only the events before it.
            cut = _first_too_large(chunk, held - size, self.max_event_bytes)
            if cut == 0:
                self._give_up()
                raise EventTooLarge(self.max_event_bytes, [])
            if cut > 0:
                end = cut - 1
        if chunk.endswith(b"\n\n"):  # the usual read: whole events
            held = 0
        else:
            # What follows the last blank line is the unfinished event.
            last = chunk.rfind(b"\n\n")
            if last >= 0:
                held = size - last - 2
            elif chunk[0] == 0x0A:  # a blank line (a tail never starts with \n)
                held = size - 1
        self._held = held
        # Whole lines only: a UTF-8 sequence is never cut (\n is not part of one).
        text = chunk[:end].decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        out: list[tuple[str, str]] = []
        event = self._event
        data = self._data
        parts = None if data is None else self._parts
        for line in text.split("\n"):
            if not line:
                if data is not None:
                    out.append((event or "message", data if parts is None else "\n".join(parts)))
                    data = parts = None
                event = ""
                continue
            if line.startswith("data:"):  # the usual line, first
                value = line[6:] if line.startswith(" ", 5) else line[5:]
            elif line[0] == ":":
                continue
            else:
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "event":
                    event = value
                    continue
                if name == "id":
                    if "\0" not in value:
                        self.last_event_id = value
                    continue
                if name == "retry":
                    if value.isascii() and value.isdigit():
                        self.retry_ms = int(value)
                    continue
                if name != "data":
                    continue  # an unknown field is ignored
            if data is None:
                data = value
            elif parts is None:
                parts = [data, value]
            else:
                parts.append(value)
        if cut > 0:
            self._give_up()
            raise EventTooLarge(self.max_event_bytes, out)
        self._event = event
        self._data = data
        if data is not None:
            self._parts = parts
        return out

    def _give_up(self) -> None:
        """Forget the unfinished event and line (the stream is not read further)."""
        self._tail.clear()  # in place: the traceback of an error may still see the list
        self._held = 0
        self._data = self._parts = None


def _first_too_large(chunk: bytes, before: int, limit: int) -> int:
    """Where in `chunk` the first event over `limit` starts, -1 if none is.

    `chunk` is whole lines, then the start of the next (a line starts it);
    `before` bytes of its first event came in earlier reads.
    """
    start = 0  # where the event being measured starts in chunk
    blank = 0 if chunk[0] == 0x0A else _next_blank(chunk, 0)
    while blank >= 0:
        if before + blank - start > limit:
            return start
        before = 0
        start = blank + 1
        blank = _next_blank(chunk, blank)
    return start if before + len(chunk) - start > limit else -1


def _next_blank(chunk: bytes, start: int) -> int:
    """The index of the next blank line (its \\n) from `start` on, -1 if there is none."""
    found = chunk.find(b"\n\n", start)
    return found + 1 if found >= 0 else -1
