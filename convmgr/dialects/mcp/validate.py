"""A small JSON Schema checker: wire.SCHEMAS for what clients send, and the tools' inputSchema.

It knows the keywords those schemas use (a test walks them all) and nothing
else, so it costs no import of pydantic or jsonschema at start-up. Like the
pydantic models wire.py comes from, it reads a null in an optional property as
an absent one, and drops it. It is stricter than them in one way: JSON types
are not coerced ("1" is not an integer), so it accepts nothing they reject.
"""

import re
from functools import cache
from typing import Any, cast

from convmgr.dialects.mcp import wire

Schema = dict[str, Any]

KEYWORDS = frozenset(
    {
        "$defs",
        "$ref",
        "additionalProperties",
        "anyOf",
        "const",
        "description",
        "enum",
        "items",
        "maxLength",
        "maximum",
        "minLength",
        "minimum",
        "oneOf",
        "pattern",
        "properties",
        "required",
        "title",
        "type",
    }
)

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class Invalid(Exception):
    """A value that does not fit its schema; `where` is its path, as "a.b.0"."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


def read(name: str, params: Any) -> dict[str, Any]:
    """Params of a client message checked against wire.SCHEMAS[name]; Invalid when they do not fit.

    No params are `{}`, as the SDK reads them.
    """
    value = {} if params is None else params
    check(wire.SCHEMAS[name], value)
    return cast(dict[str, Any], value)


def check(schema: Schema, value: Any, root: Schema | None = None) -> None:
    """Raise Invalid at the first place where `value` does not fit `schema`."""
    problem = _problem(schema, value, root or schema, ())
    if problem is not None:
        path, message = problem
        raise Invalid(".".join(map(str, path)), message)


Problem = tuple[tuple[str | int, ...], str]


def _is(kind: str, value: Any) -> bool:
    if isinstance(value, bool) and kind not in ("boolean",):
        return False
    if kind == "number" and isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return isinstance(value, _JSON_TYPES[kind])


def _problem(
    schema: Schema, value: Any, root: Schema, path: tuple[str | int, ...]
) -> Problem | None:
    if "$ref" in schema:
        target: Schema = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        return _problem(target, value, root, path)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(k, value) for k in kinds):
            return path, f"must be {' or '.join(_article(k) for k in kinds)}"
    if "const" in schema and value != schema["const"]:
        return path, f"must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return path, "must be one of " + ", ".join(repr(v) for v in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            fits = [s for s in schema[union] if _problem(s, value, root, path) is None]
            if not fits or (union == "oneOf" and len(fits) > 1):
                first = _problem(schema[union][0], value, root, path)
                return first if len(schema[union]) == 1 and first else (path, "has the wrong shape")
    if isinstance(value, str):
        return _string_problem(schema, value, path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return path, f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return path, f"must be at most {schema['maximum']}"
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problem = _problem(schema["items"], item, root, (*path, index))
            if problem is not None:
                return problem
    if isinstance(value, dict):
        return _object_problem(schema, value, root, path)
    return None


def _string_problem(schema: Schema, value: str, path: tuple[str | int, ...]) -> Problem | None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        return path, f"must be at least {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return path, f"must be at most {schema['maxLength']} characters"
    if "pattern" in schema and _compiled(schema["pattern"]).search(value) is None:
        return path, f"must match {schema['pattern']}"
    return None


def _object_problem(
    schema: Schema, value: dict[str, Any], root: Schema, path: tuple[str | int, ...]
) -> Problem | None:
    properties: dict[str, Schema] = schema.get("properties", {})
    required = schema.get("required", ())
    for key in [k for k, v in value.items() if v is None and k in properties]:
        if key not in required:
            del value[key]  # an optional null is an absent property
    for key in required:
        if key not in value:
            return (*path, key), "is required"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = (*path, key)
        if key in properties:
            problem = _problem(properties[key], item, root, where)
        elif extra is False:
            problem = where, "is not a known property"
        elif isinstance(extra, dict):
            problem = _problem(extra, item, root, where)
        else:
            problem = None
        if problem is not None:
            return problem
    return None


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else ("null" if kind == "null" else f"a {kind}")


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
