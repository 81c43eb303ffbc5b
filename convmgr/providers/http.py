"""What the OpenAI-compatible providers share: the HTTP client, SSE reading, retries.

httpx is imported on the first turn, not when this module is imported: a
configured HTTP provider must not slow down the server's start (httpx alone
takes ~85 ms to import, most of the `initialize` budget).

Server-sent events are split by `convmgr.providers.sse.SSEDecoder` (that
module says why not httpx-sse).

Every string a provider sends that can reach a turn's error, a retry notice or
a log (messages, codes, types, bodies, headers) passes through `redact`, once,
where `OpenAICompatibleProvider.stream` hands the failure on: a provider may
echo the API key, or the value of a configured header, anywhere in its answer.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

import anyio
import anyio.lowlevel
import anyio.to_thread

from convmgr import __version__
from convmgr.logs import fields
from convmgr.model import Item
from convmgr.providers.base import (
    ProviderError,
    ProviderEvent,
    Retrying,
    ToolCallRequest,
    TurnRequest,
)
from convmgr.providers.headers import AUTHORIZATION, ORGANIZATION_HEADER, PROJECT_HEADER
from convmgr.providers.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEDecoder
from convmgr.providers.urls import endpoint_url, shown_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

# An error body is read only this far: enough for any provider's message, and a
# misbehaving server cannot make us buffer a huge page.
_ERROR_BODY_LIMIT = 64 * 1024
# How long a finished stream may take to send its last bytes. Reading them lets
# the connection go back to the pool; a server that keeps the stream open after
# its final event must not delay the end of the turn much.
_DRAIN_TIMEOUT_S = 0.25
# Status codes worth another attempt (the set the OpenAI SDKs retry).
_RETRY_STATUS = frozenset({408, 409, 429})
# A decompressed read can be far larger than a network read (64 KiB): it is
# split into pieces this large, and other tasks run between them.
_READ_SLICE = 64 * 1024
# Provider text in an error is shown up to this many characters (codes up to
# _CODE_CHARS), cut after the key is blanked out. Until then it is kept up to
# _KEPT_CHARS, so that the cut cannot leave part of a key (no key is as long).
_SHOWN_CHARS = 1000
_CODE_CHARS = 100
_KEPT_CHARS = 64 * 1024
# Configured header values this long are blanked out of provider text like the
# key. A shorter one is no secret worth the name, and blanking it would garble
# messages (a value "1" would take every digit 1 with it).
_SECRET_MIN_CHARS = 8


@dataclass(frozen=True, slots=True)
class HttpProviderSettings:
    """A configured OpenAI-compatible provider (one `[providers.NAME]` table)."""

    name: str
    # May end with a query (Azure's `?api-version=`), sent with every request.
    base_url: str
    default_model: str
    api_key_env: str | None = None
    # `Authorization` carries `Bearer KEY`; any other header carries the key alone.
    api_key_header: str = AUTHORIZATION
    # Sent as OpenAI-Organization and OpenAI-Project.
    organization: str | None = None
    project: str | None = None
    # Sent with every request, after the defaults (so User-Agent can be replaced).
    # Values are secrets: expanded from `${NAME}` at start-up, never shown.
    headers: tuple[tuple[str, str], ...] = ()
    request_timeout_s: float = 600.0
    max_retries: int = 4
    # Backoff before retry n (1-based) is about base * 2**(n-1), capped at
    # retry_max_delay_s, with jitter so that many turns failing together do not
    # come back together.
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 30.0
    # The model's context window in tokens, when the configuration gives it.
    context_window: int | None = None
    # A Retry-After longer than this ends the turn instead of holding it open.
    max_retry_after_s: float = 120.0
    # An event of the stream larger than this fails the turn (the server's
    # --max-message-bytes; not a key of the configuration file).
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


class StreamParser(Protocol):
    """Turns one API's server-sent events into provider events."""

    @property
    def finished(self) -> bool:
        """Whether the final event was seen (the rest of the body is not needed)."""
        ...

    @property
    def complete(self) -> bool:
        """Whether the reply is whole, so that the end of the body is not a broken stream."""
        ...

    def feed(self, event: str, data: str) -> list[ProviderEvent]:
        """The events one SSE message carries; raises ProviderError or RetryableError."""
        ...


class RetryableError(Exception):
    """An attempt failed in a way another attempt may not (network, 429, 5xx)."""

    def __init__(self, message: str, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after_s = retry_after_s


# The C scanner under json.loads: called directly it takes half the time on a
# small event (json.loads adds two regular-expression matches for white space).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_json_event(data: str) -> dict[str, Any]:
    """The JSON object of an SSE `data` field; ProviderError if it is not one."""
    try:
        value, end = _scan_json(data, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(data):
        # White space around the value, or not JSON at all: json.loads decides.
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            raise ProviderError(
                f"malformed event in the provider's stream: {_kept(data)!r}", code="bad_stream"
            ) from None
    if not isinstance(value, dict):
        raise ProviderError(
            f"unexpected event in the provider's stream: {_kept(data)!r}", code="bad_stream"
        )
    return value


def error_fields(error: object) -> tuple[str | None, str | None, str | None]:
    """The message, code and type of an API error object (OpenAI, vLLM or Ollama shape)."""
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message") or error.get("detail") or error.get("error")
    return (
        message if isinstance(message, str) else None,
        _code(error.get("code")),
        # A Responses `error` event's type is just "error": no information.
        None if error.get("type") == "error" else _code(error.get("type")),
    )


# Error codes a server sends inside a stream when trying again may succeed.
TRANSIENT_ERRORS = frozenset({"server_error", "overloaded_error", "rate_limit_exceeded"})


def raise_stream_error(error: object) -> NoReturn:
    """Raise the error the server sent in the stream (retryable when it is transient)."""
    message, code, kind = error_fields(error)
    message = _kept(message) if message else "the provider reported an error"
    if code in TRANSIENT_ERRORS or kind in TRANSIENT_ERRORS:
        raise RetryableError(message, code or kind or "provider_error")
    raise ProviderError(message, code or kind or "provider_error")


def _code(value: object) -> str | None:
    """An error code as a string (vLLM sends numbers), None when absent."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def item_text(item: Item) -> str:
    """The text of a message history item (its text parts joined by newlines)."""
    return "\n".join(str(part.get("text", "")) for part in item.get("content") or ())


def sent_arguments(arguments: object) -> str:
    """A history call's arguments as sent back: the raw text when it is a JSON object, else "{}".

    The history keeps the model's text as it came, but servers that render
    calls through a chat template (vLLM, llama.cpp, SGLang, Ollama) parse it and
    answer 400 when it is not an object, which would fail every later turn of
    the conversation. The call's output already tells the model it failed.
    """
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except (ValueError, RecursionError):
            return "{}"
        if isinstance(value, dict):
            return arguments
    return "{}"


class PendingCall:
    """A streamed function call whose pieces are still arriving."""

    __slots__ = ("arguments", "call_id", "name", "sent")

    def __init__(self) -> None:
        self.call_id = ""
        self.name = ""
        self.arguments: list[str] = []
        # Handed on already: a call goes to the turn loop once per attempt.
        self.sent = False

    def take(self) -> ToolCallRequest:
        """The call as handed on (and marked so)."""
        self.sent = True
        arguments = "".join(self.arguments)
        return ToolCallRequest(
            # The output must name the call: a server that gave no id gets one.
            call_id=self.call_id or f"call_{uuid.uuid4().hex[:24]}",
            name=self.name,
            # Some servers stream no argument text at all for a function without
            # parameters: that is a call with no arguments, not malformed JSON.
            arguments=arguments if arguments.strip() else "{}",
        )


def usage_number(usage: Mapping[str, Any], key: str) -> int:
    """A token count from a usage object, 0 when absent or not a number."""
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class OpenAICompatibleProvider:
    """A provider speaking an OpenAI-style streaming HTTP API; subclasses pick the API."""

    kind: ClassVar[str]
    path: ClassVar[str]
    needs_history = True

    def __init__(self, settings: HttpProviderSettings) -> None:
        self.settings = settings
        self._url = endpoint_url(settings.base_url, self.path)
        self._shown_url = shown_url(self._url)
        self._client: httpx.AsyncClient | None = None
        self._client_lock: anyio.Lock | None = None

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self.settings.name

    @property
    def default_model(self) -> str:
        """The model used when a conversation names none."""
        return self.settings.default_model

    @property
    def context_window(self) -> int | None:
        """The model's context window in tokens, when configured."""
        return self.settings.context_window

    def build_body(self, request: TurnRequest) -> dict[str, Any]:
        """The JSON request body for one turn."""
        raise NotImplementedError

    def new_parser(self) -> StreamParser:
        """A parser for one attempt's event stream."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def stream(self, request: TurnRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Stream one reply, retrying failed attempts from the start; ProviderError at the end."""
        # Read at turn time so that a key exported (or rotated) after start-up is used.
        headers, secrets = provider_headers(self.settings, self._api_key())
        content = json.dumps(self.build_body(request), ensure_ascii=False).encode()
        client = self._client or await self._make_client()
        log.debug("provider %s: POST %s (%d bytes)", self.name, self._url, len(content))
        max_retries = self.settings.max_retries
        attempt = 0
        while True:
            try:
                async with aclosing(self._attempt(client, headers, content)) as batches:
                    async for batch in batches:
                        for event in batch:
                            yield event
                return
            except RetryableError as exc:
                failure = exc
            except ProviderError as exc:
                raise ProviderError(
                    redact(exc.message, secrets), _redact_code(exc.code, secrets)
                ) from None
            attempt += 1
            message = redact(failure.message, secrets)
            code = _redact_code(failure.code, secrets)
            if attempt > max_retries:
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                raise ProviderError(f"{message} (gave up after {tries})", code) from None
            delay = self._retry_delay(attempt, failure.retry_after_s)
            if delay is None:
                raise ProviderError(
                    f"{message} (the provider asks to wait {failure.retry_after_s:g} s)", code
                ) from None
            retry_in_ms = math.ceil(delay * 1000)
            log.warning(
                "provider %s: %s; retry %d of %d in %d ms",
                self.name,
                message,
                attempt,
                max_retries,
                retry_in_ms,
                extra=fields(provider=self.name, attempt=attempt, reason=code),
            )
            yield Retrying(message=message, attempt=attempt, retry_in_ms=retry_in_ms)
            await anyio.sleep(delay)

    async def _attempt(
        self, client: httpx.AsyncClient, headers: dict[str, str], content: bytes
    ) -> AsyncGenerator[list[ProviderEvent], None]:
        """One request: its events a network read at a time; RetryableError or ProviderError.

        The errors carry the provider's text as it came: stream() redacts it.
        """
        import httpx

        parser = self.new_parser()
        feed = parser.feed
        decoder = SSEDecoder(self.settings.max_event_bytes)
        try:
            # `async with` closes the response however this generator ends: at
            # the end, on an error, or on cancellation (an interrupt), which is
            # what tears down the connection promptly while the server is silent.
            async with client.stream("POST", self._url, headers=headers, content=content) as resp:
                if resp.status_code // 100 != 2:
                    raise await _status_error(resp)
                content_type = resp.headers.get("content-type", "")
                if "text/event-stream" not in content_type:
                    raise await _not_a_stream(resp, content_type)
                # The raw bytes, unless the server compressed the stream.
                encoding = resp.headers.get("content-encoding", "").strip().lower()
                raw = encoding in ("", "identity")
                reads = resp.aiter_raw() if raw else _sliced(resp.aiter_bytes())
                async with aclosing(reads):  # type: ignore[type-var]
                    async for chunk in reads:
                        # Every event of the read is handled before the consumer
                        # runs again: one trip through the generators per read.
                        batch: list[ProviderEvent] = []
                        too_large: int | None = None
                        try:
                            try:
                                events = decoder.feed(chunk)
                            except EventTooLarge as exc:
                                # Not the error itself: its traceback holds the event.
                                events, too_large = exc.events, exc.limit
                            for name, data in events:
                                batch += feed(name, data)
                                if parser.finished:
                                    break
                        except (ProviderError, RetryableError):
                            # The events before the bad one still go out first.
                            if batch:
                                yield batch
                            raise
                        if batch:
                            yield batch
                        if parser.finished:
                            break
                        if too_large is not None:
                            # Another attempt would get the same event: no retry.
                            raise ProviderError(
                                f"provider event larger than {too_large} bytes "
                                "(--max-message-bytes)",
                                code="event_too_large",
                            )
                    if parser.finished:
                        # Whatever follows the final event is ignored.
                        with anyio.move_on_after(_DRAIN_TIMEOUT_S):
                            async for _ in reads:
                                pass
        except httpx.TimeoutException as exc:
            raise RetryableError(self._timeout_message(exc), "timeout") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise RetryableError(self._network_message(exc), "connection_error") from None
        except httpx.HTTPError as exc:
            # Anything else httpx raises (a bad URL, a proxy refusing) will fail
            # again: end the turn.
            raise ProviderError(
                f"the request to {self._shown_url} failed: {type(exc).__name__}: {exc}",
                code="request_error",
            ) from None
        if not parser.complete:
            raise RetryableError("the stream ended before the reply was complete", "broken_stream")

    async def _make_client(self) -> httpx.AsyncClient:
        """The provider's one client (so that connections are reused), made on first use.

        Importing httpx (~85 ms) and building its TLS context (~40 ms) happen in
        a worker thread: done on the event loop, they would stall every other
        conversation's stream for that long.
        """
        if self._client_lock is None:
            self._client_lock = anyio.Lock()
        async with self._client_lock:
            if self._client is None:
                self._client = await anyio.to_thread.run_sync(self._new_client)
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        """A client configured from the settings (runs in a worker thread)."""
        import httpx

        timeout = self.settings.request_timeout_s
        return httpx.AsyncClient(
            # The read timeout bounds the silence between two chunks, so a
            # stalled server is noticed (and retried) after request_timeout_s.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            # Each running turn holds a connection for the whole reply, so a
            # bounded pool would make turn 101 wait for turn 1 to end; the
            # manager's --max-conversations is the limit that applies.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    def _api_key(self) -> str | None:
        """The key from the environment, or None when the provider takes none."""
        env = self.settings.api_key_env
        if env is None:
            return None
        key = os.environ.get(env, "").strip()
        if not key:
            raise ProviderError(
                f"provider {self.name!r}: the environment variable {env} (api_key_env) is not set",
                code="missing_api_key",
            )
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            # httpx would refuse the header and quote its value in the error:
            # refuse it here, without showing it.
            raise ProviderError(
                f"provider {self.name!r}: the environment variable {env} holds a key "
                "with characters an HTTP header cannot carry",
                code="bad_api_key",
            )
        return key

    def _retry_delay(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before retry `attempt`, None when Retry-After is too long."""
        settings = self.settings
        if retry_after_s is not None:
            if retry_after_s > settings.max_retry_after_s:
                return None
            # Retry-After is a minimum; a little jitter on top spreads the herd.
            return retry_after_s + random.uniform(0.0, min(1.0, retry_after_s * 0.1))
        ceiling = min(
            settings.retry_max_delay_s, settings.retry_base_delay_s * 2.0 ** (attempt - 1)
        )
        # "Equal jitter": at least half the backoff, so retries never bunch up at 0.
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)

    def _timeout_message(self, exc: httpx.TimeoutException) -> str:
        """What timed out, in words (httpx's own messages are often empty)."""
        import httpx

        seconds = self.settings.request_timeout_s
        if isinstance(exc, httpx.ConnectTimeout):
            return f"could not connect to {self._shown_url} in time"
        if isinstance(exc, httpx.ReadTimeout):
            return f"the provider sent nothing for {seconds:g} s"
        return f"the request to {self._shown_url} timed out ({type(exc).__name__})"

    def _network_message(self, exc: Exception) -> str:
        """A network failure, in words."""
        import httpx

        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return f"could not connect to {self._shown_url}: {detail}"
        return f"the connection to the provider broke: {detail}"


def provider_headers(
    settings: HttpProviderSettings, key: str | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Every header a request to the provider carries, key included, and the values never shown."""
    headers = _request_headers(settings)
    secrets = tuple(value for _, value in settings.headers if len(value) >= _SECRET_MIN_CHARS)
    if key:
        bearer = settings.api_key_header.lower() == AUTHORIZATION.lower()
        headers[settings.api_key_header] = f"Bearer {key}" if bearer else key
        secrets = (key, *secrets)
    return headers, secrets


def _request_headers(settings: HttpProviderSettings) -> dict[str, str]:
    """The headers of every request but the key's."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Cache-Control": "no-store",
        "User-Agent": f"convmgr/{__version__}",
    }
    if settings.organization is not None:
        headers[ORGANIZATION_HEADER] = settings.organization
    if settings.project is not None:
        headers[PROJECT_HEADER] = settings.project
    for name, value in settings.headers:
        # A configured header replaces a default of the same name in any case:
        # two spellings in the dict would go out as two headers.
        for default in [d for d in headers if d.lower() == name.lower()]:
            del headers[default]
        headers[name] = value
    return headers


async def _sliced(reads: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The reads in pieces of at most _READ_SLICE bytes, other tasks running between them."""
    async with aclosing(reads):  # type: ignore[type-var]
        async for read in reads:
            if len(read) <= _READ_SLICE:
                yield read
                continue
            view = memoryview(read)
            for start in range(0, len(read), _READ_SLICE):
                if start:
                    await anyio.lowlevel.checkpoint()
                yield bytes(view[start : start + _READ_SLICE])


async def _read_capped(response: httpx.Response) -> str:
    """The start of a response body as text (at most _ERROR_BODY_LIMIT bytes)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")


def _body_message(body: str) -> tuple[str | None, str | None]:
    """The error message and code in an error body, if it is JSON that has them."""
    try:
        value = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    message, code, _ = error_fields(value.get("error", value))
    if message is None and "error" in value:
        message, code, _ = error_fields(value)
    return message, code


async def _status_error(response: httpx.Response) -> Exception:
    """The error for a non-2xx response: RetryableError for 408/409/429/5xx."""
    status = response.status_code
    body = await _read_capped(response)
    message, code = _body_message(body)
    if message is None:
        message = body.strip() or response.reason_phrase or "no message"
    text = f"HTTP {status}: {message}"
    if status in _RETRY_STATUS or status >= 500:
        return RetryableError(text, f"http_{status}", _retry_after(response.headers))
    return ProviderError(text, code or f"http_{status}")


async def _not_a_stream(response: httpx.Response, content_type: str) -> ProviderError:
    """The error for a 2xx answer that is not an event stream (a proxy, a wrong URL)."""
    body = await _read_capped(response)
    message, code = _body_message(body)
    if message is not None:
        return ProviderError(message, code or "provider_error")
    shown = content_type or "no content type"
    return ProviderError(
        f"the provider did not answer with an event stream ({shown}): {body.strip()!r}",
        code="bad_stream",
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or a date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def redact(text: str, secrets: Iterable[str], limit: int = _SHOWN_CHARS) -> str:
    """Provider text safe to show: the key and header values blanked out, then cut to `limit`."""
    forms: set[str] = set()
    for secret in secrets:
        # Also as repr() (errors quote stream data with it) or JSON would
        # escape it: a backslash doubled, a quote behind one.
        escaped = secret.replace("\\", "\\\\")
        forms |= {secret, escaped, escaped.replace("'", "\\'"), escaped.replace('"', '\\"')}
    # Longest first: a secret that holds another is blanked whole.
    for form in sorted(forms, key=len, reverse=True):
        if form:
            text = text.replace(form, "***")
    return _clip(text, limit)


def _redact_code(code: str | None, secrets: Iterable[str]) -> str | None:
    """An error code (which may come from the provider) made safe to show."""
    return None if code is None else redact(code, secrets, _CODE_CHARS)


def _kept(text: str) -> str:
    """Provider text as an error keeps it until redact() cuts it (long enough for any key)."""
    return _clip(text, _KEPT_CHARS)


def _clip(text: str, limit: int) -> str:
    """Text cut to `limit` characters for an error message."""
    return text if len(text) <= limit else text[:limit] + "…"
