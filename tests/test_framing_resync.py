"""Content-Length framing resynchronises after bad input: one error per bad frame, no frame lost.

After a bad header the decoder skips to the next `Content-Length:` header line; a length
over the limit is skipped without swallowing the input behind it, even when it is absurd.
"""

import json
from collections.abc import Sequence

import pytest
from client import frame
from hypothesis import given
from hypothesis import strategies as st

from convmgr.dialects.convmgr.errors import ErrorCode
from convmgr.jsonrpc.framing import BadFrame, Frame, LspDecoder, Oversize, encode_frame

MAX = 1000
BAD = BadFrame("missing or invalid Content-Length header")
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
GOOD = [b'{"jsonrpc":"2.0","id":2,"method":"ping"}', b"{}", b"[1,2,3]"]
GOOD_BYTES = b"".join(encode_frame(body, "lsp") for body in GOOD)


def _decode(data: bytes, cuts: Sequence[int] = (), max_bytes: int = MAX) -> list[Frame]:
    """Feed `data` split at `cuts`, then end the input; every frame."""
    decoder = LspDecoder(max_bytes)
    frames: list[Frame] = []
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        frames += decoder.feed(data[start:cut])
        start = cut
    frames += decoder.feed(data[start:])
    return frames + decoder.finish()


def _decode_both_ways(data: bytes, max_bytes: int = MAX) -> list[Frame]:
    """Frames of `data` fed whole; fed one byte at a time must give the same."""
    whole = _decode(data, max_bytes=max_bytes)
    assert _decode(data, list(range(len(data))), max_bytes) == whole
    return whole


BAD_HEADERS = {
    "negative": b"Content-Length: -5\r\n\r\n",
    "letters": b"Content-Length: abc\r\n\r\n",
    "exponent": b"Content-Length: 1e3\r\n\r\n",
    "plus sign": b"Content-Length: +41\r\n\r\n",
    "empty": b"Content-Length:\r\n\r\n",
    "missing": b"Content-Type: application/vscode-jsonrpc\r\n\r\n",
    "bad after another header": b"Content-Type: x\r\nContent-Length: abc\r\n\r\n",
}


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_header_is_one_error_and_later_frames_decode(header: bytes) -> None:
    assert _decode_both_ways(header + PING + GOOD_BYTES) == [BAD, *GOOD]


def test_garbage_at_the_start_is_one_error_and_later_frames_decode() -> None:
    assert _decode_both_ways(b"hello\r\n\r\n" + PING + GOOD_BYTES) == [BAD, *GOOD]


def test_too_small_length_is_one_error_and_later_frames_decode() -> None:
    # The short body is broken JSON (its error comes from the connection); the rest of
    # it is skipped up to the next header without a second error.
    data = b"Content-Length: 5\r\n\r\n" + PING + GOOD_BYTES
    assert _decode_both_ways(data) == [PING[:5], *GOOD]


def test_too_small_length_at_end_of_input_is_one_error() -> None:
    assert _decode_both_ways(b"Content-Length: 5\r\n\r\n" + PING) == [PING[:5]]


def test_absurd_length_is_oversize_and_does_not_swallow_the_input() -> None:
    header = b"Content-Length: 100000000000000000000\r\n\r\n"
    assert _decode_both_ways(header + PING + GOOD_BYTES) == [Oversize(10**20), *GOOD]
    # Answered as soon as the header is read, not when 10^20 bytes have gone by.
    assert LspDecoder(MAX).feed(header) == [Oversize(10**20)]


def test_length_over_max_is_oversize_and_later_frames_decode() -> None:
    # 5000 bytes announced, far fewer sent: the next header ends the skip.
    data = b"Content-Length: 5000\r\n\r\n" + PING + GOOD_BYTES
    assert _decode_both_ways(data) == [Oversize(5000), *GOOD]


def test_length_of_thousands_of_digits_is_oversize() -> None:
    data = b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n" + PING + GOOD_BYTES
    assert _decode(data) == [Oversize(None), *GOOD]


def test_consecutive_bad_headers_are_one_error_each() -> None:
    data = b"Content-Length: abc\r\n\r\n" + PING + b"Content-Length: -5\r\n\r\n" + PING
    assert _decode_both_ways(data + GOOD_BYTES) == [BAD, BAD, *GOOD]


def test_bad_body_that_mentions_a_header_is_still_one_error() -> None:
    body = json.dumps({"text": "Content-Length: 7\r\n\r\nxx", "more": "content-length: 3"})
    data = b"Content-Length: abc\r\n\r\n" + body.encode() + GOOD_BYTES
    assert _decode_both_ways(data) == [BAD, *GOOD]


def test_long_garbage_after_bad_header_is_one_error_and_not_buffered() -> None:
    decoder = LspDecoder(MAX)
    frames = decoder.feed(b"Content-Length: abc\r\n\r\n")
    for _ in range(100):
        frames += decoder.feed(b'{"pad":"' + b"a" * 10_000 + b'"}')
        assert len(decoder._buf) < 200  # skipped, not held
    frames += decoder.feed(GOOD_BYTES) + decoder.finish()
    assert frames == [BAD, *GOOD]


def test_header_block_too_long_is_one_error_and_later_frames_decode() -> None:
    long_header = b"Content-Length: 5\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    assert _decode(long_header + PING + GOOD_BYTES) == [BadFrame("header block too long"), *GOOD]


def test_garbage_made_of_header_lines_is_not_an_error_per_line() -> None:
    # Every line is a resync point whose header block never ends: skipped on, not
    # reported once per line.
    data = b"Content-Length: abc\r\n\r\n" + b"Content-Length:\x01\r\n" * 20_000 + GOOD_BYTES
    bodies, errors = _split(_decode(data, range(0, len(data), 65536)))
    assert bodies == GOOD
    assert 1 <= len(errors) <= 2


# --- properties -------------------------------------------------------------

BODIES = st.lists(st.binary(max_size=40), max_size=3)
CUTS = st.lists(st.integers(min_value=0, max_value=4000), max_size=8)
GARBAGE = (
    st.lists(
        st.sampled_from(
            [
                b"Content-Length:",
                b"content-length: ",
                b"Content-Length: 7",
                b"Content-Type: x",
                b"X:",
                b"5",
                b"-5",
                b"abc",
                b"1e3",
                b"+41",
                b"\r",
                b"\n",
                b"\r\n",
                b'"',
                b"{",
                b"}",
                b":",
                b" ",
            ]
        )
        | st.binary(max_size=8),
        max_size=20,
    )
    .map(b"".join)
    # No header block may end inside the garbage (or at the fresh line that follows it):
    # bytes that make a whole header announce a body, which may then cover the next frame.
    .filter(lambda garbage: b"\r\n\r\n" not in garbage + b"\r\n")
)
JSON_TEXT = st.text(max_size=20) | st.sampled_from(
    ["Content-Length: 5\r\n\r\n", "content-length: 9", "x: y", '"\r\n']
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _frames(bodies: list[bytes]) -> bytes:
    return b"".join(encode_frame(body, "lsp") for body in bodies)


def _split(frames: list[Frame]) -> tuple[list[bytes], list[Frame]]:
    bodies = [f for f in frames if isinstance(f, bytes)]
    return bodies, [f for f in frames if not isinstance(f, bytes)]


@given(BODIES, GARBAGE, BODIES, CUTS)
def test_garbage_never_loses_a_frame_on_a_fresh_line(
    before: list[bytes], garbage: bytes, after: list[bytes], cuts: list[int]
) -> None:
    data = _frames(before) + garbage + b"\r\n" + _frames(after)
    bodies, errors = _split(_decode(data, cuts))
    assert bodies == before + after
    assert len(errors) <= 1


@given(
    BODIES,
    st.sampled_from(
        [(header, BAD) for header in BAD_HEADERS.values()]
        + [
            (b"Content-Length: 100000000000000000000\r\n\r\n", Oversize(10**20)),
            (b"Content-Length: 5000\r\n\r\n", Oversize(5000)),
        ]
    ),
    JSON,
    BODIES,
    CUTS,
)
def test_bad_header_with_a_json_body_is_one_error(
    before: list[bytes],
    bad: tuple[bytes, Frame],
    body: object,
    after: list[bytes],
    cuts: list[int],
) -> None:
    header, error = bad
    payload = json.dumps(body, ensure_ascii=False).encode()
    data = _frames(before) + header + payload + _frames(after)
    assert _decode(data, cuts) == [*before, error, *after]


@given(BODIES, JSON, st.integers(min_value=0), BODIES, CUTS)
def test_too_small_length_loses_no_later_frame(
    before: list[bytes], body: object, short: int, after: list[bytes], cuts: list[int]
) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode()
    short %= len(payload)
    data = _frames(before) + b"Content-Length: %d\r\n\r\n" % short + payload + _frames(after)
    bodies, errors = _split(_decode(data, cuts))
    assert bodies == [*before, payload[:short], *after]
    assert len(errors) <= 1  # only when the rest of the body looks like a header field


# --- through the real binary ----------------------------------------------------


def test_lsp_session_answers_ping_after_bad_headers(spawn) -> None:
    client = spawn("--no-store", framing="lsp")
    assert client.result("ping") == {}
    lost = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "ping"}).encode()
    bad_frames = [
        (b"Content-Length: abc\r\n\r\n" + lost, ErrorCode.PARSE_ERROR),
        (b"Content-Length: 5\r\n\r\n" + lost, ErrorCode.PARSE_ERROR),
        (b"Content-Type: x\r\n\r\n" + lost, ErrorCode.PARSE_ERROR),
        (b"Content-Length: 100000000000000000000\r\n\r\n" + lost, ErrorCode.INVALID_REQUEST),
    ]
    for bad, code in bad_frames:
        msg_id = client.next_id()
        ping = {"jsonrpc": "2.0", "id": msg_id, "method": "ping"}
        client.methods[msg_id] = "ping"
        client.send_raw(bad + frame(json.dumps(ping).encode(), "lsp"))
        error = client.read_message()
        assert error["id"] is None and error["error"]["code"] == code, (bad, error)
        assert client.read_message() == {"jsonrpc": "2.0", "id": msg_id, "result": {}}, bad
    client.close_stdin()
    client.expect_eof()
    assert client.wait() == 0
