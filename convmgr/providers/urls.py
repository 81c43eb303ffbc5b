"""Checks on provider URLs, shared by the configuration's fast path and its models."""

from urllib.parse import urlsplit


def check_base_url(value: str) -> str:
    """An http(s) URL with a host, its path's trailing slash dropped; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    # Even an empty fragment: the endpoint's path would land inside it.
    if "#" in value:
        raise ValueError("must not have a fragment")
    # A query (Azure OpenAI's `?api-version=...`) goes on every request, after the path.
    base, _, query = value.partition("?")
    return base.rstrip("/") + (f"?{query}" if query else "")


def endpoint_url(base_url: str, path: str) -> str:
    """The URL of an endpoint: its path after the base URL's, before the base URL's query."""
    base, mark, query = base_url.partition("?")
    return f"{base.rstrip('/')}{path}{mark}{query}"


def shown_url(url: str) -> str:
    """A URL as error messages show it: without its query, which may carry a key."""
    return url.partition("?")[0]
