"""A provider's extra request headers: the checks the configuration's fast path and models share.

Values may hold `${NAME}` references, expanded from the environment at
start-up (`expand`). A header value may be a secret: no message here quotes one.
"""

import re
from collections.abc import Mapping

AUTHORIZATION = "Authorization"
ORGANIZATION_HEADER = "OpenAI-Organization"
PROJECT_HEADER = "OpenAI-Project"

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110's token: the characters a header name is made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What makes the request a JSON POST answered by an event stream: convmgr sets
# these (or httpx computes them), and another value would break the turn.
_RESERVED = frozenset(
    {"accept", "connection", "content-length", "content-type", "host", "transfer-encoding"}
)
_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
# An OpenAI organization or project id: visible ASCII, no spaces.
_ID = re.compile(r"[!-~]+")


def check_header_name(name: str) -> str:
    """A header name convmgr may send; ValueError otherwise."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
    if name.lower() in _RESERVED:
        raise ValueError(f"{name!r} is a header convmgr sets itself")
    return name


def check_id(value: str) -> str:
    """An organization or project id as sent in its header; ValueError otherwise."""
    if not _ID.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces")
    return value


def check_headers(
    headers: Mapping[str, str],
    *,
    api_key_env: str | None,
    api_key_header: str,
    organization: str | None,
    project: str | None,
) -> tuple[tuple[str, str], ...]:
    """A table's `headers` as (name, value) pairs in order; ValueError names the first bad one."""
    # Each header is sent once: a name that another key of the table already
    # sends would go out twice, one value overriding the other at random.
    taken = {}
    if api_key_env is not None:
        taken[api_key_header.lower()] = "the key of api_key_env (api_key_header)"
    if organization is not None:
        taken[ORGANIZATION_HEADER.lower()] = "organization"
    if project is not None:
        taken[PROJECT_HEADER.lower()] = "project"
    seen: set[str] = set()
    for name, value in headers.items():
        check_header_name(name)
        lower = name.lower()
        if lower in seen:
            raise ValueError(f"{name!r} is given twice (header names ignore case)")
        if lower in taken:
            raise ValueError(f"{name!r} is already sent for {taken[lower]}")
        seen.add(lower)
        _check_value(name, value)
    return tuple(headers.items())


def _check_value(name: str, value: str) -> None:
    """A value as written: printable ASCII around well-formed `${NAME}` references."""
    for match in _REFERENCE.finditer(value):
        if not ENV_NAME.fullmatch(match[1]):
            raise ValueError(
                f"the value of {name!r} has a ${{...}} that does not hold the name of an "
                "environment variable"
            )
    literal = _REFERENCE.sub("", value)
    if "${" in literal:
        raise ValueError(f"the value of {name!r} has a ${{ without its closing }}")
    if not literal.isascii() or not literal.isprintable():
        raise ValueError(f"the value of {name!r} must be printable ASCII on one line")


def expand(value: str, env: Mapping[str, str]) -> str:
    """A checked value with each `${NAME}` replaced from `env`; ValueError names an unset one."""

    def variable(match: re.Match[str]) -> str:
        name = match[1]
        # Stripped as the API key is: a value pasted with a newline is still meant.
        text = env.get(name, "").strip()
        if not text:
            raise ValueError(f"the environment variable {name} is not set")
        if not text.isascii() or not text.isprintable():
            raise ValueError(
                f"the environment variable {name} holds characters an HTTP header cannot carry"
            )
        return text

    # HTTP drops white space around a value, and h11 refuses to send it (quoting the value).
    return _REFERENCE.sub(variable, value).strip()
