"""Which store a process uses: a SQLite file or a PostgreSQL URL, and how it is shown.

Precedence (README): --no-store > --store > $CONVMGR_STORE > [store] url > the
default SQLite file. Nothing here imports a database driver.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from convmgr.store.base import ConversationStore

STORE_ENV = "CONVMGR_STORE"


def is_postgres_url(value: str | Path) -> bool:
    """Whether a store location names a PostgreSQL database rather than a SQLite file."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def store_target(
    flag: str | Path | None, config_url: str | None, env: Mapping[str, str] | None = None
) -> str | Path:
    """The store location in effect: a PostgreSQL URL (str) or a SQLite file (Path)."""
    from convmgr.store.paths import default_store_path

    environ = os.environ if env is None else env
    for value in (flag, environ.get(STORE_ENV) or None, config_url):
        if value is None or value == "":
            continue
        if is_postgres_url(value):
            return str(value)
        return Path(value).expanduser()
    return default_store_path()


def make_store(target: str | Path, *, lease_ttl_s: float = 30.0) -> ConversationStore:
    """A store (not open yet) at the location."""
    if isinstance(target, str) and is_postgres_url(target):
        from convmgr.store.postgres import PostgresStore

        return PostgresStore(target, lease_ttl_s=lease_ttl_s)
    from convmgr.store.sqlite import SqliteStore

    return SqliteStore(Path(target))


def schema_version_for(target: str | Path) -> int:
    """The schema version this convmgr brings a store at the location to."""
    if isinstance(target, str) and is_postgres_url(target):
        from convmgr.store.postgres_schema import SCHEMA_VERSION as PG_VERSION

        return PG_VERSION
    from convmgr.store.sqlite_schema import SCHEMA_VERSION

    return SCHEMA_VERSION


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***: what may be shown or logged."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostport}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/:*@")))


def describe(target: str | Path) -> str:
    """The location as it may be shown: a path, or a URL with its password masked."""
    return mask_url(target) if isinstance(target, str) else str(target)


def url_host(url: str) -> str:
    """The host (and port) a URL names, for messages; libpq's default when it names none."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    if not hostport:
        query = dict(parse_qsl(parts.query))
        hostport = query.get("host") or os.environ.get("PGHOST") or "localhost"
        if "port" in query:
            hostport = f"{hostport}:{query['port']}"
    return unquote(hostport)
