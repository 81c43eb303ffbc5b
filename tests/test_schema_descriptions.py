"""schemas/ documents itself: every property of every wire type has a description and a title.

The descriptions come from the pydantic models (`Field(description=...)`) and the
models' docstrings; a new field without one fails here, naming the schema file
and the property's path in it.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from convmgr.dialects.convmgr.schema import all_schemas

SCHEMAS = all_schemas()


def properties(schema: Any, path: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path of the property, its name, its schema) for every property, nested ones too."""
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for name, prop in props.items():
                yield f"{path}.properties.{name}".lstrip("."), name, prop
        for key, value in schema.items():
            yield from properties(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for n, value in enumerate(schema):
            yield from properties(value, f"{path}[{n}]")


def objects(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The schema itself and every definition under $defs, with their paths."""
    yield "(top)", schema
    for name, definition in schema.get("$defs", {}).items():
        yield f"$defs.{name}", definition


@pytest.mark.parametrize("file", sorted(SCHEMAS))
def test_every_property_has_a_description(file: str) -> None:
    missing = [
        path
        for path, _, prop in properties(SCHEMAS[file])
        if not str(prop.get("description", "")).strip()
    ]
    assert not missing, f"schemas/{file}: properties without a description: {', '.join(missing)}"


@pytest.mark.parametrize("file", sorted(SCHEMAS))
def test_every_type_has_a_description(file: str) -> None:
    missing = [
        path
        for path, schema in objects(SCHEMAS[file])
        if schema.get("type") == "object" and not str(schema.get("description", "")).strip()
    ]
    assert not missing, f"schemas/{file}: types without a description: {', '.join(missing)}"


@pytest.mark.parametrize("file", sorted(SCHEMAS))
def test_property_titles_read_as_words(file: str) -> None:
    # Pydantic titles a camelCase alias as one word ("Droplastmessages"); ours are words.
    bad = [
        f"{path} ({prop.get('title')!r})"
        for path, name, prop in properties(SCHEMAS[file])
        if (title := prop.get("title")) is not None
        and (
            title.replace(" ", "").lower() != name.lower()
            or (name != name.lower() and " " not in title)
        )
    ]
    assert not bad, f"schemas/{file}: titles that do not read as words: {', '.join(bad)}"


def test_the_walk_finds_nested_properties() -> None:
    schema = {
        "properties": {"a": {"description": "x"}},
        "$defs": {"B": {"type": "object", "properties": {"bigName": {"title": "Bigname"}}}},
    }
    found = [(path, name) for path, name, _ in properties(schema)]
    assert found == [("properties.a", "a"), ("$defs.B.properties.bigName", "bigName")]
