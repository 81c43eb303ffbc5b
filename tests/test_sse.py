"""SSEDecoder: the event-stream splitter of the HTTP providers, on its own."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from convmgr.providers.sse import SSEDecoder


def events_of(*chunks: bytes) -> list[tuple[str, str]]:
    """Every event a fresh decoder returns for these reads, in order."""
    decoder = SSEDecoder()
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def bytewise(body: bytes) -> list[tuple[str, str]]:
    """The events of the body read one byte at a time."""
    return events_of(*(body[i : i + 1] for i in range(len(body))))


def test_one_event_per_blank_line() -> None:
    body = b'data: {"a": 1}\n\ndata: two\n\n'
    assert events_of(body) == [("message", '{"a": 1}'), ("message", "two")]
    assert bytewise(body) == events_of(body)


def test_every_event_of_a_read_at_once_and_none_before_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n\ndata: c\n") == [("message", "a"), ("message", "b")]
    assert decoder.feed(b"\n") == [("message", "c")]


def test_multi_line_data_joins_with_newlines() -> None:
    body = b'data: {\ndata:  "a": 1\ndata\ndata:}\n\n'
    # One space after the colon is dropped, no more; a bare `data` is an empty line.
    assert events_of(body) == [("message", '{\n "a": 1\n\n}')]


def test_line_ends_crlf_cr_lf_and_mixed() -> None:
    for end in (b"\r\n", b"\r", b"\n"):
        body = b"event: x" + end + b"data: 1" + end + end + b"data: 2" + end + end
        assert events_of(body) == [("x", "1"), ("message", "2")], end
        assert bytewise(body) == events_of(body), end
    mixed = b"data: a\r\ndata: b\rdata: c\n\r\n"
    assert events_of(mixed) == [("message", "a\nb\nc")]
    assert bytewise(mixed) == events_of(mixed)


def test_a_crlf_cut_between_two_reads_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Not held back: \r\r is already a blank line, whatever comes next.
    assert decoder.feed(b"\n\r") == [("message", "a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [("message", "b")]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [("message", "a")]
    assert decoder.feed(b"\n") == []  # a blank line: no event, and not "a" again


def test_comments_and_unknown_fields_are_ignored() -> None:
    body = b": keep-alive\n\n:\ndata: x\n: inside an event\nfoo: bar\nfoo\n\n"
    assert events_of(body) == [("message", "x")]


def test_event_name_applies_to_one_event() -> None:
    body = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\nevent:\ndata: 4\n\n"
    # A blank line without data dispatches nothing but still resets the name.
    assert events_of(body) == [("a", "1"), ("message", "2"), ("message", "3"), ("message", "4")]


def test_empty_data_is_an_event_and_no_data_is_none() -> None:
    assert events_of(b"data:\n\n") == [("message", "")]
    assert events_of(b"data\n\ndata:\ndata:\n\n") == [("message", ""), ("message", "\n")]
    assert events_of(b"\n\n\nevent: x\nid: 1\nretry: 10\n\n") == []


def test_id_and_retry_are_kept() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 7\nretry: 1500\ndata: a\n\n") == [("message", "a")]
    assert (decoder.last_event_id, decoder.retry_ms) == ("7", 1500)
    decoder.feed(b"id: 8\x009\nretry: soon\n\n")
    assert (decoder.last_event_id, decoder.retry_ms) == ("7", 1500)


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]\n") == []


def test_utf8_cut_anywhere_and_invalid_bytes_replaced() -> None:
    body = "data: Grüße 世界 🌍\n\n".encode()
    assert bytewise(body) == [("message", "Grüße 世界 🌍")]
    assert events_of(b"data: \xff\xfe ok\n\n") == [("message", "\ufffd\ufffd ok")]


def test_a_leading_byte_order_mark_is_skipped_once() -> None:
    bom = "\ufeff".encode()
    assert bytewise(bom + b"data: a\n\n") == [("message", "a")]
    # Only at the start of the stream: later it is part of a line (an unknown field).
    assert events_of(b"data: a\n\n", bom + b"data: b\n\n") == [("message", "a")]


def test_field_names_are_case_sensitive_and_need_the_whole_name() -> None:
    assert events_of(b"Data: a\ndatum: b\ndata : c\n\n") == []


# --- random streams, random reads -------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=12,
)


@dataclass
class Event:
    """One event of a generated stream, and the lines around it."""

    name: str | None
    data: list[str]
    comments: list[str]
    id: str | None
    blank_lines: int


_EVENT = st.builds(
    Event,
    name=st.none() | _TEXT,
    data=st.lists(_TEXT, max_size=4),
    comments=st.lists(_TEXT, max_size=2),
    id=st.none() | st.text(alphabet="0123456789abc", max_size=4),
    blank_lines=st.integers(0, 2),
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """A valid event stream and the events it carries."""
    text = "\ufeff" if draw(st.booleans()) else ""
    expected: list[tuple[str, str]] = []

    last_end = ""

    def line(content: str) -> str:
        nonlocal last_end
        # After a bare \r, an empty line must not end with \n: that would be \r\n.
        ends = ["\r", "\r\n"] if not content and last_end == "\r" else ["\n", "\r\n", "\r"]
        last_end = draw(st.sampled_from(ends))
        return content + last_end

    def field(name: str, value: str) -> str:
        # With or without the optional space (required when the value starts with one).
        space = " " if value.startswith(" ") or draw(st.booleans()) else ""
        return f"{name}:{space}{value}"

    for event in draw(st.lists(_EVENT, max_size=8)):
        contents: list[str] = []
        if event.name is not None:
            contents.append(field("event", event.name))
        if event.id is not None:
            contents.append(field("id", event.id))
        contents += [field("data", value) for value in event.data]
        # Comments may sit anywhere among the fields.
        for comment in event.comments:
            contents.insert(draw(st.integers(0, len(contents))), ":" + comment)
        contents += [""] * (1 + event.blank_lines)
        text += "".join(line(content) for content in contents)
        if event.data:
            expected.append((event.name or "message", "\n".join(event.data)))
    return text.encode(), expected


@settings(max_examples=300, deadline=None)
@given(stream=streams(), data=st.data())
def test_random_chunkings_of_a_random_stream_give_its_events(
    stream: tuple[bytes, list[tuple[str, str]]], data: st.DataObject
) -> None:
    body, expected = stream
    assert events_of(body) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=20)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert events_of(*chunks) == expected
    assert bytewise(body) == expected
