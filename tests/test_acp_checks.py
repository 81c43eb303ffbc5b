"""The hand checks of the hot ACP requests accept nothing `acp.schema` rejects, and read alike.

Also: the generated wire types (convmgr/dialects/acp/schema.py) are what
gen_schema.py makes from the installed `agent-client-protocol`.
"""

import os
import sys
from typing import Any

from acp import schema as s
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from convmgr.dialects.acp import checks, gen_schema
from convmgr.jsonrpc.errors import RpcError

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=5), st.floats(0, 1)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
flag = st.one_of(st.booleans(), st.none(), json_leaf)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The value, or a random JSON value in its place."""
    return st.one_of(strategy, json_value)


def optional_keys(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with any subset of these keys (and, sometimes, an unknown one)."""
    return st.fixed_dictionaries(
        {},
        optional={
            **fields,
            "extra": json_value,
            "_meta": maybe(st.dictionaries(st.text(max_size=3), json_leaf, max_size=2)),
        },
    )


initialize_params = optional_keys(
    protocolVersion=maybe(st.integers(-2, 70000)),
    clientCapabilities=maybe(
        optional_keys(fs=maybe(optional_keys(readTextFile=flag, writeTextFile=flag)), terminal=flag)
    ),
    clientInfo=maybe(
        optional_keys(
            name=maybe(st.text(max_size=4)),
            version=maybe(st.text(max_size=4)),
            title=maybe(st.text(max_size=3)),
        )
    ),
)
env_pair = maybe(optional_keys(name=maybe(st.text(max_size=3)), value=maybe(st.text(max_size=3))))
stdio_server = maybe(
    optional_keys(
        name=maybe(st.text(max_size=3)),
        command=maybe(st.text(max_size=3)),
        args=maybe(st.lists(maybe(st.text(max_size=3)), max_size=2)),
        env=maybe(st.lists(env_pair, max_size=2)),
        type=st.sampled_from(["stdio", "http", "sse"]),
    )
)
new_session_params = optional_keys(
    cwd=maybe(st.sampled_from(["/abs", "rel", ""])),
    mcpServers=maybe(st.lists(stdio_server, max_size=2)),
)
block = maybe(
    optional_keys(
        type=maybe(st.sampled_from(["text", "resource_link", "resource", "image"])),
        text=maybe(st.text(max_size=4)),
        uri=maybe(st.text(max_size=4)),
        name=maybe(st.text(max_size=4)),
        resource=maybe(
            optional_keys(
                uri=maybe(st.text(max_size=3)),
                text=maybe(st.text(max_size=3)),
                mimeType=maybe(st.text(max_size=3)),
                blob=st.text(max_size=3),
            )
        ),
    )
)
prompt_params = optional_keys(
    sessionId=maybe(st.text(max_size=4)), prompt=maybe(st.lists(block, max_size=3))
)


def accepted(model: type[Any], value: Any) -> Any:
    """The official model's reading, or None when it rejects the value."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


@given(initialize_params)
@example({"protocolVersion": 0, "clientCapabilities": None})
def test_plain_initialize_is_valid_initialize(params: dict[str, Any]) -> None:
    if checks.plain_initialize(params):
        official = accepted(s.InitializeRequest, params)
        assert official is not None
        info = checks.read_initialize(params)
        caps = official.client_capabilities
        assert info.protocol_version == official.protocol_version
        # `clientCapabilities: null` reads as none at all.
        fs = caps.fs if caps is not None else None
        assert info.terminal == bool(caps is not None and caps.terminal)
        assert info.read_text_file == bool(fs is not None and fs.read_text_file)
        assert info.write_text_file == bool(fs is not None and fs.write_text_file)


@given(new_session_params)
def test_plain_new_session_is_valid_new_session(params: dict[str, Any]) -> None:
    if checks.plain_new_session(params):
        official = accepted(s.NewSessionRequest, params)
        assert official is not None
        assert len(official.mcp_servers) == len(params["mcpServers"])
        try:
            session = checks.read_new_session(params)
        except RpcError:
            assert not os.path.isabs(params["cwd"])
        else:
            assert [m.name for m in session.mcp_servers] == [m.name for m in official.mcp_servers]


@given(prompt_params)
def test_plain_prompt_is_valid_prompt(params: dict[str, Any]) -> None:
    if checks.plain_prompt(params):
        official = accepted(s.PromptRequest, params)
        assert official is not None and len(official.prompt) == len(params["prompt"])


@given(st.one_of(initialize_params, new_session_params, prompt_params))
def test_anything_else_is_answered_not_raised(params: dict[str, Any]) -> None:
    for read in (checks.read_initialize, checks.read_new_session, checks.read_prompt):
        try:
            read(params)
        except RpcError as exc:
            assert exc.code == -32602 and exc.data["reason"] == "invalid_params"


def test_the_generated_schema_is_current() -> None:
    saved = sys.argv
    sys.argv = ["gen_schema", "--check"]
    try:
        assert gen_schema.main() == 0, "run python -m convmgr.dialects.acp.gen_schema"
    finally:
        sys.argv = saved
