"""Checks on provider URLs, shared by the configuration's fast path and its models."""

from urllib.parse import urlsplit


def check_base_url(value: str) -> str:
    """An http(s) URL with a host, without its trailing slash; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    return value.rstrip("/")
