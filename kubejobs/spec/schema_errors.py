"""JSON Schema validation of spec documents, with messages a user can act on.

jsonschema's own messages repeat the whole offending value and say nothing about
intent; here each error becomes FILE::JSONPATH plus a short statement of what was
expected, and an unknown key gets the known key it most likely meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from kubejobs.errors import Problem
from kubejobs.resources import load_json
from kubejobs.spec.schema_check import Check, compile_check

SPEC_SCHEMA = "functionspec.schema.json"
WORKFLOW_SCHEMA = "workflow.schema.json"
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


@cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry()
    for name in (SPEC_SCHEMA, WORKFLOW_SCHEMA):
        schema = load_json("schema", name)
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


@cache
def validator(schema_file: str) -> Draft202012Validator:
    return Draft202012Validator(load_json("schema", schema_file), registry=_registry())


@cache
def _valid_check(schema_file: str) -> Check | None:
    return compile_check(load_json("schema", schema_file), _registry())


def json_path(parts: Iterable[str | int]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


def schema_problems(data: Any, schema_file: str, source: str) -> list[Problem]:
    # Most documents are valid: the fast check says so exactly (see schema_check), and
    # only a document with errors pays for jsonschema, which reports them.
    is_valid = _valid_check(schema_file)
    if is_valid is not None and is_valid(data):
        return []
    problems: list[Problem] = []
    for error in validator(schema_file).iter_errors(data):
        problems.extend(_describe(error, source))
    return problems


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return dict(error.schema) if isinstance(error.schema, Mapping) else {}


def _describe(error: ValidationError, source: str) -> list[Problem]:
    path = list(error.absolute_path)
    keyword = error.validator
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(_schema_of(error).get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        return [Problem(source, json_path([*path, key]), _unknown_key(key, known)) for key in extra]
    if keyword in ("allOf", "anyOf") and error.context:
        return [p for sub in error.context for p in _describe(sub, source)]
    return [Problem(source, json_path(path), _message(error))]


def suggest(key: str, known: Sequence[str]) -> str | None:
    """The known key `key` most likely meant: same letters without - and _, or a close spelling."""

    def norm(text: str) -> str:
        return text.replace("-", "").replace("_", "").lower()

    for candidate in known:
        if norm(candidate) == norm(key):
            return candidate
    close = difflib.get_close_matches(norm(key), [norm(k) for k in known], n=1, cutoff=0.75)
    if close:
        return next(k for k in known if norm(k) == close[0])
    return None


def _unknown_key(key: str, known: Sequence[str]) -> str:
    guess = suggest(key, known)
    hint = f"; did you mean {guess!r}?" if guess else f" (known keys: {', '.join(known)})"
    return f"unknown key {key!r}{hint}"


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: ValidationError) -> str:
    keyword = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = _schema_of(error)
    if keyword == "required":
        missing = [k for k in expected if k not in value]
        return f"missing required key {missing[0]!r}" if missing else error.message
    if keyword == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {wanted}, got {_type_name(value)} {_short(value)}"
    if keyword == "minimum":
        return f"must be at least {expected}, got {value}"
    if keyword == "maximum":
        return f"must be at most {expected}, got {value}"
    if keyword == "minLength":
        return "must not be empty"
    if keyword == "minItems":
        return f"must have at least {expected} item(s)"
    if keyword == "pattern" and expected == "^/":
        return f"must start with '/', got {_short(value)}"
    if keyword == "oneOf" and schema.get("oneOf"):
        kinds = " or ".join(_describe_schema(s) for s in schema["oneOf"])
        return f"expected {kinds}, got {_type_name(value)} {_short(value)}"
    return error.message


def _describe_schema(schema: dict[str, Any]) -> str:
    if schema.get("type") == "array":
        return f"a list of {schema.get('items', {}).get('type', 'value')}s"
    return f"a {schema.get('type', 'value')}"
