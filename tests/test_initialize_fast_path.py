"""`initialize` checks common params without pydantic; it must accept only what the model does."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from convmgr.dialects.convmgr.handlers import _plain_initialize_params
from convmgr.dialects.convmgr.lifecycle import InitializeParams

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(["protocolVersion", "clientInfo", "capabilities", "name", "version", "x"])
_params = st.recursive(
    _json,
    lambda inner: st.dictionaries(_keys, inner, max_size=4),
    max_leaves=10,
)


@given(_params)
def test_fast_path_accepts_only_what_the_model_accepts(params: Any) -> None:
    if _plain_initialize_params(params):
        try:
            InitializeParams.model_validate(params or {})
        except ValidationError as exc:  # pragma: no cover - the failure being guarded
            raise AssertionError(f"fast path accepted {params!r}: {exc}") from None


def test_fast_path_takes_the_usual_shapes() -> None:
    assert _plain_initialize_params(None)
    assert _plain_initialize_params({})
    assert _plain_initialize_params(
        {"protocolVersion": "1", "clientInfo": {"name": "ed", "version": "2"}, "capabilities": {}}
    )
    assert not _plain_initialize_params({"clientInfo": {"version": "2"}})
