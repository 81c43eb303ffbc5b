"""Core records to wire dicts (the shapes of protocol.methods), and params to settings.

Results are built as plain dicts rather than through the pydantic models: this
is the hot path of every response, and tests check the dicts against the models.
"""

from typing import TYPE_CHECKING, Any

from convmgr.core.manager import ConversationView
from convmgr.model import SETTINGS_FIELDS, ConversationRecord, ConversationSettings

if TYPE_CHECKING:
    from convmgr.dialects.convmgr.methods import ConversationSettingsParams


def session_configured(record: ConversationRecord) -> dict[str, Any]:
    """The `NewConversation` result: the conversation's configuration."""
    settings = record.settings
    configured: dict[str, Any] = {
        "conversationId": record.conversation_id,
        "provider": record.provider,
        "model": record.model,
        "instructions": settings.instructions,
        "cwd": settings.cwd,
        "createdAt": record.created_at,
        "forkedFrom": record.forked_from,
        "historyLength": record.history_length,
    }
    if settings.tools:
        configured["tools"] = settings.tools
    if settings.mcp_servers is not None:
        configured["mcpServers"] = settings.mcp_servers
    return {"conversationId": record.conversation_id, "sessionConfigured": configured}


def conversation_info(view: ConversationView) -> dict[str, Any]:
    """`ConversationInfo` of a loaded or stored conversation."""
    record = view.record
    return {
        "conversationId": record.conversation_id,
        "status": "running" if view.running else "idle",
        "loaded": view.loaded,
        "provider": record.provider,
        "model": record.model,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "forkedFrom": record.forked_from,
        "historyLength": record.history_length,
        "lastSeq": record.last_seq,
        "preview": record.preview,
        "metadata": record.settings.metadata,
    }


def settings_of(params: "ConversationSettingsParams | None") -> ConversationSettings:
    """The settings a params object gives (None where it gives nothing)."""
    if params is None:
        return ConversationSettings()
    # The wire model names every setting (it is checked against SETTINGS_FIELDS).
    values = {name: getattr(params, name) for name in SETTINGS_FIELDS}
    if params.tools is not None:
        # Kept in their wire shape: stored, exported and shown as given.
        values["tools"] = [tool.model_dump(by_alias=True) for tool in params.tools]
    return ConversationSettings(**values)
