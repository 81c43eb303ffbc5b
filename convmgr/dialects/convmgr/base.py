"""The base of every wire model, and the conversation id type."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic.fields import ComputedFieldInfo, FieldInfo

# Words a field name spells in lower case that its schema title spells otherwise.
_TITLE_WORDS = {"id": "ID", "mcp": "MCP", "cwd": "CWD"}


def _field_title(name: str, info: FieldInfo | ComputedFieldInfo) -> str:
    """A property's schema title from its Python name: `drop_last_messages` -> "Drop last messages".

    Without it pydantic titles properties from their camelCase alias
    ("Droplastmessages"). Titles only label schemas/; the wire is unchanged.
    """
    words = [_TITLE_WORDS.get(word, word) for word in name.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


# Schemas are built on first use, not at import: start-up time matters (an
# editor pays it on every spawn) and most runs touch only a few models.
WIRE_CONFIG = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    defer_build=True,
    extra="ignore",
    field_title_generator=_field_title,
)


class WireModel(BaseModel):
    """Base of every wire type: camelCase on the wire, unknown fields ignored."""

    model_config = WIRE_CONFIG


# Counts and sizes fit a signed 64-bit integer (what SQLite and most clients hold).
MAX_INT = 2**63 - 1

ConversationId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"),
]
