"""Settings a conversation is created with, before defaults are applied."""

from dataclasses import dataclass, fields, replace
from typing import Any

from convmgr.core.records import ConversationRecord


@dataclass(slots=True, frozen=True)
class ConversationSettings:
    """Client-given settings; None means "not given" (use the default or the source's)."""

    provider: str | None = None
    model: str | None = None
    instructions: str | None = None
    cwd: str | None = None
    metadata: dict[str, Any] | None = None
    ephemeral: bool | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None

    @classmethod
    def of_record(cls, record: ConversationRecord) -> "ConversationSettings":
        """The settings a stored conversation was made with (what a fork starts from)."""
        return cls(
            provider=record.provider,
            model=record.model,
            instructions=record.instructions,
            cwd=record.cwd,
            metadata=record.metadata,
            ephemeral=record.ephemeral,
            temperature=record.temperature,
            max_output_tokens=record.max_output_tokens,
        )

    def overlay(self, overrides: "ConversationSettings | None") -> "ConversationSettings":
        """These settings with every field `overrides` gives replaced."""
        if overrides is None:
            return self
        given = {
            f.name: getattr(overrides, f.name)
            for f in fields(overrides)
            if getattr(overrides, f.name) is not None
        }
        return replace(self, **given)


@dataclass(slots=True, frozen=True)
class TurnSettings:
    """Per-turn overrides of the conversation's model settings."""

    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
