"""The process's log: text or JSON lines with timestamps, structured fields, no secrets.

Every module logs through the standard `logging` module. Fields that a JSON
line carries as keys of its own are given as `extra=fields(name=value, ...)`;
the text format writes them after the message as `name=value`. User text
(prompts, replies, tool arguments and outputs) is logged only through
`content()`, which shows its size unless `--log-content` was given. Every line
is passed through `redact` before it is written: the values of the API key
variables the configuration names, and bearer tokens, never reach the log.

This module imports nothing of convmgr, so every layer may use it.
"""

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

# Libraries whose own records stay at warning unless --log-libraries is given:
# their debug lines can quote whole messages (pylsp_jsonrpc, mcp).
LIBRARY_LOGGERS = ("asyncio", "httpcore", "httpx", "pylsp_jsonrpc", "mcp", "anyio", "uvloop")

_FIELDS = "convmgr_fields"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
# A key shorter than this is not blanked out of every line: it would blank common words.
_MIN_SECRET = 4


class _State:
    """What configure() decided for the process."""

    content = False
    secret_envs: tuple[str, ...] = ()


def fields(**values: Any) -> dict[str, Any]:
    """The `extra` of a log call whose values are structured fields of the line."""
    return {_FIELDS: values}


def content_enabled() -> bool:
    """Whether user text may be logged (--log-content)."""
    return _State.content


def content(text: str) -> str:
    """User text as the log may show it: itself with --log-content, else its size."""
    if _State.content:
        return text
    return f"<{len(text)} chars>"


def watch_secret_envs(names: Iterable[str]) -> None:
    """Blank out the values of these environment variables (API keys) from every line."""
    _State.secret_envs = tuple(dict.fromkeys((*_State.secret_envs, *names)))


def redact(text: str) -> str:
    """A log line with bearer tokens and the watched keys' values replaced by ***."""
    for name in _State.secret_envs:
        value = os.environ.get(name, "").strip()
        if len(value) >= _MIN_SECRET and value in text:
            text = text.replace(value, "***")
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(r"\1***", text)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    """The record's time, ISO 8601 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _value_text(value: Any) -> str:
    """A field's value as the text format writes it (quoted when it has spaces)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message key=value ...`, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus a traceback's lines when there is one)."""
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extra: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if extra:
            line += "".join(
                f" {key}={_value_text(value)}" for key, value in extra.items() if value is not None
            )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        extra: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if extra:
            for key, value in extra.items():
                if value is not None and key not in entry:
                    entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        # Redacted before and after encoding: JSON escapes a quote or backslash in a key.
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def configure(
    level: str,
    *,
    stream: TextIO | None = None,
    log_format: LogFormat = "text",
    log_content: bool = False,
    libraries: bool = False,
) -> None:
    """Send the process's log to `stream` (stderr) at `level`, in `log_format`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    _State.content = log_content
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if libraries else logging.WARNING)
