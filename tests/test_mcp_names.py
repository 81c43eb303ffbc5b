"""The names the model sees for MCP tools: SERVER__TOOL, [A-Za-z0-9_-], 64 characters, unique."""

import re

from hypothesis import given
from hypothesis import strategies as st

from convmgr.tools.names import MAX_NAME, hashed_name, model_names, plain_name

VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def test_a_plain_name_is_server__tool() -> None:
    assert model_names([("time", "get_current_time")]) == ["time__get_current_time"]


def test_characters_outside_the_set_become_underscores() -> None:
    assert model_names([("files", "read.file"), ("files", "über tool/v2")]) == [
        "files__read_file",
        "files___ber_tool_v2",
    ]


def test_a_long_name_is_cut_to_64_with_a_hash_of_the_original() -> None:
    long_tool = "t" * 80
    (name,) = model_names([("srv", long_tool)])
    assert len(name) == MAX_NAME
    assert name.startswith("srv__ttt")
    assert re.fullmatch(r"srv__t+_[0-9a-f]{8}", name)
    # Two long names alike in their first 55 characters stay apart.
    a, b = model_names([("srv", long_tool + "a"), ("srv", long_tool + "b")])
    assert a != b
    assert a[:-9] == b[:-9]


def test_names_that_would_collide_each_get_a_hash() -> None:
    names = model_names([("files", "read.file"), ("files", "read_file"), ("time", "now")])
    assert names[0] != names[1]
    assert names[0].startswith("files__read_file_")
    assert names[1].startswith("files__read_file_")
    assert names[2] == "time__now"
    # Across servers too: "a__b" + "c" and "a" + "b__c".
    x, y = model_names([("a__b", "c"), ("a", "b__c")])
    assert x != y


def test_a_name_is_the_same_whatever_else_is_listed() -> None:
    alone = model_names([("srv", "x" * 70)])
    among = model_names([("other", "y"), ("srv", "x" * 70)])
    assert alone[0] == among[1] == hashed_name("srv", "x" * 70)
    assert plain_name("srv", "x") == "srv__x"


_SERVERS = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)


@given(st.lists(st.tuples(_SERVERS, st.text(min_size=1, max_size=90)), unique=True, max_size=8))
def test_names_are_valid_and_distinct(pairs: list[tuple[str, str]]) -> None:
    names = model_names(pairs)
    assert all(VALID.fullmatch(name) for name in names)
    assert len(set(names)) == len(names)
