"""Framing: ndjson and Content-Length, split anywhere, oversize skipped, auto-detection."""

from hypothesis import given
from hypothesis import strategies as st

from convmgr.jsonrpc.framing import (
    AutoDecoder,
    BadFrame,
    Frame,
    LspDecoder,
    NdjsonDecoder,
    Oversize,
    encode_frame,
)


def _feed_split(
    decoder: NdjsonDecoder | LspDecoder | AutoDecoder, data: bytes, cuts: list[int]
) -> list[Frame]:
    frames: list[Frame] = []
    start = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)):
        frames += decoder.feed(data[start:cut])
        start = cut
    frames += decoder.feed(data[start:])
    return frames + decoder.finish()


BODIES = [b'{"id":1}', b'{"id":2,"method":"ping"}', b"[1,2,3]"]


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_ndjson_split_anywhere(cuts: list[int]) -> None:
    data = b"".join(encode_frame(b, "ndjson") for b in BODIES)
    assert _feed_split(NdjsonDecoder(1000), data, cuts) == BODIES


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_lsp_split_anywhere(cuts: list[int]) -> None:
    data = b"".join(encode_frame(b, "lsp") for b in BODIES)
    assert _feed_split(LspDecoder(1000), data, cuts) == BODIES


def test_ndjson_blank_lines_and_crlf_are_skipped() -> None:
    frames = NdjsonDecoder(100).feed(b'\n\r\n{"a":1}\r\n  \n')
    assert frames == [b'{"a":1}\r']


def test_ndjson_last_line_without_newline_counts_at_end() -> None:
    decoder = NdjsonDecoder(100)
    assert decoder.feed(b'{"a":1}') == []
    assert decoder.finish() == [b'{"a":1}']


def test_ndjson_oversize_is_skipped_without_buffering() -> None:
    decoder = NdjsonDecoder(10)
    frames = decoder.feed(b"x" * 50)
    frames += decoder.feed(b"y" * 1000)
    assert frames == []
    assert len(decoder._buf) == 0  # nothing of the oversize line is held
    frames += decoder.feed(b'z\n{"ok":1}\n')
    assert frames == [Oversize(1051), b'{"ok":1}']


def test_lsp_oversize_body_is_skipped() -> None:
    decoder = LspDecoder(10)
    frames = decoder.feed(encode_frame(b"x" * 100, "lsp") + encode_frame(b"{}", "lsp"))
    assert frames == [Oversize(100), b"{}"]


def test_lsp_bad_header_is_reported_and_the_next_frame_read() -> None:
    decoder = LspDecoder(100)
    frames = decoder.feed(b"Content-Length: abc\r\n\r\n" + encode_frame(b"{}", "lsp"))
    assert frames == [BadFrame("missing or invalid Content-Length header"), b"{}"]


def test_lsp_extra_headers_are_accepted() -> None:
    decoder = LspDecoder(100)
    data = b"Content-Type: application/vscode-jsonrpc\r\nContent-Length: 2\r\n\r\n{}"
    assert decoder.feed(data) == [b"{}"]


def test_lsp_truncated_frame_at_end_is_reported() -> None:
    decoder = LspDecoder(100)
    assert decoder.feed(b"Content-Length: 10\r\n\r\n{}") == []
    assert decoder.finish() == [BadFrame("input ended inside a frame")]


def test_auto_detects_lsp_and_ndjson() -> None:
    lsp = AutoDecoder(100)
    assert lsp.feed(b"\n  " + encode_frame(b"{}", "lsp")) == [b"{}"]
    assert lsp.framing == "lsp"
    nd = AutoDecoder(100)
    assert nd.feed(b'  {"a":1}\n') == [b'{"a":1}']
    assert nd.framing == "ndjson"


def test_lsp_oversize_body_that_mentions_headers_is_skipped_by_its_length() -> None:
    # A JSON body cannot hold a resync point (a raw CR), so an honest oversize length is
    # skipped exactly, even when its text looks like headers.
    body = b'{"text":"Content-Length: 2\\r\\n\\r\\n{}","pad":"' + b"a" * 200 + b'"}'
    data = encode_frame(body, "lsp") + encode_frame(b"{}", "lsp")
    assert _feed_split(LspDecoder(100), data, list(range(0, len(data), 7))) == [
        Oversize(len(body)),
        b"{}",
    ]


def test_lsp_body_is_taken_by_its_length_whatever_it_holds() -> None:
    body = b"Content-Length: 5\r\n\r\nhello"
    data = encode_frame(body, "lsp") + encode_frame(b"{}", "lsp")
    assert LspDecoder(100).feed(data) == [body, b"{}"]
