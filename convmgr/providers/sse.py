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
"""


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
    """

    __slots__ = ("_cr", "_data", "_event", "_started", "_tail", "last_event_id", "retry_ms")

    def __init__(self) -> None:
        self._tail = b""  # the start of a line that has not ended yet
        self._cr = False  # the last read ended with \r (a \n next is part of it)
        self._started = False
        self._event = ""
        self._data: str | None = None  # None: no data field yet in this event
        self.last_event_id = ""
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events that the bytes of one read complete (name, data)."""
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
        end = chunk.rfind(0x0A)
        if end < 0:
            self._tail += chunk
            return []
        if self._tail:
            end += len(self._tail)
            chunk = self._tail + chunk
        self._tail = chunk[end + 1 :]
        # Whole lines only: a UTF-8 sequence is never cut (\n is not part of one).
        text = chunk[:end].decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        out: list[tuple[str, str]] = []
        event = self._event
        data = self._data
        for line in text.split("\n"):
            if not line:
                if data is not None:
                    out.append((event or "message", data))
                    data = None
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
            data = value if data is None else f"{data}\n{value}"
        self._event = event
        self._data = data
        return out
