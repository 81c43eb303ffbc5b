"""Export and import of one stored conversation as JSON lines (`convmgr export` / `import`).

The first line is a header, `{"type": "conversation", ...}`, holding the
conversation's settings and summary in camelCase; every following line is one
history item in its wire shape.
"""

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from convmgr.dialects.convmgr.base import ConversationId
from convmgr.dialects.convmgr.items import HistoryItem
from convmgr.dialects.convmgr.methods import ConversationSettingsParams
from convmgr.dialects.convmgr.translate import settings_of
from convmgr.model import (
    SETTINGS_FIELDS,
    ConversationNotFound,
    ConversationRecord,
    Item,
    preview_of,
    utc_now,
)
from convmgr.store.base import ConversationStore

FORMAT_VERSION = 1

# Items are read this many at a time, so exporting a long history stays small.
EXPORT_PAGE = 1000


class ConversationHeader(ConversationSettingsParams):
    """The first line of an export: a conversation's settings and summary."""

    type: Literal["conversation"]
    format_version: Literal[1] = 1
    conversation_id: ConversationId
    provider: str
    model: str
    created_at: str | None = None
    updated_at: str | None = None
    forked_from: str | None = None
    last_seq: int = Field(default=0, ge=0)
    # Written for people reading the file; recomputed from the items on import.
    history_length: int | None = None
    preview: str | None = None

    @field_validator("created_at", "updated_at")
    @classmethod
    def _normalise_time(cls, value: str | None) -> str | None:
        """Store times in utc_now's format: listing sorts them as text."""
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SUMMARY_FIELDS = (
    "created_at",
    "updated_at",
    "forked_from",
    "history_length",
    "last_seq",
    "preview",
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_item_adapter: TypeAdapter[Any] | None = None
_id_adapter: TypeAdapter[str] | None = None


def _items() -> TypeAdapter[Any]:
    # Built on first use: only export/import runs pay for the schema.
    global _item_adapter
    if _item_adapter is None:
        _item_adapter = TypeAdapter(HistoryItem)
    return _item_adapter


def _ids() -> TypeAdapter[str]:
    global _id_adapter
    if _id_adapter is None:
        _id_adapter = TypeAdapter(ConversationId)
    return _id_adapter


def header_of(record: ConversationRecord) -> dict[str, Any]:
    """The export header line of a record, camelCase as on the wire."""
    header: dict[str, Any] = {
        "type": "conversation",
        "formatVersion": FORMAT_VERSION,
        "conversationId": record.conversation_id,
    }
    for name in SETTINGS_FIELDS:
        if name != "ephemeral":  # an exported conversation is a stored one
            header[_camel(name)] = getattr(record.settings, name)
    for name in _SUMMARY_FIELDS:
        header[_camel(name)] = getattr(record, name)
    return header


async def export_conversation(
    store: ConversationStore, conversation_id: str
) -> AsyncIterator[dict[str, Any]]:
    """The header, then every history item in order; ConversationNotFound if not stored."""
    record = await store.get(conversation_id)
    if record is None:
        raise ConversationNotFound(conversation_id)
    yield header_of(record)
    offset = 0
    while True:
        page = await store.read_items(conversation_id, offset, EXPORT_PAGE)
        for item in page:
            yield item
        if len(page) < EXPORT_PAGE:
            return
        offset += len(page)


def _describe(exc: ValidationError) -> str:
    """The first few validation errors as 'field.path: message'."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


async def import_conversation(
    store: ConversationStore, lines: Iterable[str], conversation_id: str | None = None
) -> str:
    """Store a conversation read from export lines and return its id.

    `conversation_id` imports under another id. ValueError (naming the line)
    for bad input; ConversationExists when the id is taken.
    """
    header: ConversationHeader | None = None
    items: list[Item] = []
    adapter = _items()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not valid JSON: {exc.msg}") from None
        if header is None:
            if not isinstance(value, dict) or value.get("type") != "conversation":
                raise ValueError(
                    f'line {number}: expected the {{"type": "conversation", ...}} header first'
                )
            try:
                header = ConversationHeader.model_validate(value)
            except ValidationError as exc:
                raise ValueError(f"line {number}: invalid header: {_describe(exc)}") from None
            continue
        try:
            item = adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"line {number}: invalid history item: {_describe(exc)}") from None
        # Normalised to the wire shape: unknown fields dropped, camelCase keys.
        items.append(adapter.dump_python(item, mode="json", by_alias=True, exclude_none=True))
    if header is None:
        raise ValueError("no conversation header: the input is empty")
    if conversation_id is not None:
        try:
            conversation_id = _ids().validate_python(conversation_id)
        except ValidationError as exc:
            raise ValueError(f"invalid conversation id: {_describe(exc)}") from None
    now = utc_now()
    record = ConversationRecord(
        conversation_id=conversation_id or header.conversation_id,
        # An imported conversation is a stored one by definition.
        settings=replace(settings_of(header), ephemeral=None),
        created_at=header.created_at or now,
        updated_at=header.updated_at or header.created_at or now,
        forked_from=header.forked_from,
        history_length=len(items),
        last_seq=header.last_seq,
        preview=preview_of(items),
    )
    await store.create(record, items)
    return record.conversation_id
