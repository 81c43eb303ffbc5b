"""The names the model sees for MCP tools: SERVER__TOOL, cut to [A-Za-z0-9_-] and 64 characters."""

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

MAX_NAME = 64
_OUTSIDE = re.compile(r"[^A-Za-z0-9_-]")
# "_" and 8 hex digits of SHA-256: 32 bits, so two cut names of one turn's tool
# list practically never collide again.
_SUFFIX_HEX = 8


def plain_name(server: str, tool: str) -> str:
    """SERVER__TOOL with every character outside [A-Za-z0-9_-] replaced by `_` (not cut)."""
    return _OUTSIDE.sub("_", f"{server}__{tool}")


def hashed_name(server: str, tool: str, identity: str | None = None) -> str:
    """The plain name cut short, and a hash of the original (or of `identity`)."""
    # Server names match [A-Za-z0-9_-]+, so "server/tool" names one pair only.
    digest = hashlib.sha256((identity or f"{server}/{tool}").encode()).hexdigest()[:_SUFFIX_HEX]
    return f"{plain_name(server, tool)[: MAX_NAME - _SUFFIX_HEX - 1]}_{digest}"


def model_names(
    pairs: Sequence[tuple[str, str]], identities: Sequence[str | None] | None = None
) -> list[str]:
    """The model's name for each (server, tool), in order, all distinct.

    A plain name that fits and is not shared is kept as it is; a name that had
    to be cut, or that two tools would share, gets a hash suffix of its original
    (or of its identity, when two servers share a name: conversations' own ones).
    """
    plain = [plain_name(server, tool) for server, tool in pairs]
    counts = Counter(plain)
    ids = identities or [None] * len(pairs)
    return [
        name if len(name) <= MAX_NAME and counts[name] == 1 else hashed_name(server, tool, key)
        for name, (server, tool), key in zip(plain, pairs, ids, strict=True)
    ]
