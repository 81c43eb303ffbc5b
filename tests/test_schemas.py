"""The checked-in schemas/ match the pydantic models; results and events fit them."""

from pathlib import Path

import pytest

from convmgr.core.manager import ConversationView
from convmgr.dialects.convmgr.methods import ConversationInfo, NewConversationResult
from convmgr.dialects.convmgr.schema import all_schemas, render
from convmgr.dialects.convmgr.translate import conversation_info, session_configured
from convmgr.model import ConversationRecord, ConversationSettings

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_checked_in_schema_matches_models(name: str) -> None:
    path = SCHEMAS / name
    assert path.exists(), f"{name} missing: run `convmgr schema --out schemas`"
    assert path.read_text(encoding="utf-8") == render(all_schemas()[name]), (
        f"schemas/{name} drifted from the models: run `convmgr schema --out schemas`"
    )


def test_no_stale_schema_files() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(all_schemas())


def test_hand_built_results_fit_the_models() -> None:
    record = ConversationRecord(
        conversation_id="c1",
        settings=ConversationSettings(
            provider="echo", model="echo", metadata={"error": 1, "result": 2}
        ),
        created_at="2026-01-01T00:00:00.000000Z",
        updated_at="2026-01-01T00:00:00.000000Z",
    )
    NewConversationResult.model_validate(session_configured(record))
    info = ConversationInfo.model_validate(conversation_info(ConversationView(record, True, False)))
    assert info.model_dump(by_alias=True) == conversation_info(
        ConversationView(record, True, False)
    )
