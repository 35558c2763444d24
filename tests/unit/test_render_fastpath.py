"""Fast paths of validate + render give exactly what the plain way gives.

- templating: the cached parse of the rendered skeleton, filled with a render's
  values, equals a fresh parse (or fails with the same error); the C loader and
  the pure-Python loader agree.
- schema_check: the compiled yes/no check agrees with jsonschema on every document.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry

from kubejobs.render import Renderer, RenderSettings, default_process_id, templating
from kubejobs.render.context import build_context
from kubejobs.spec import load_documents, validate_spec
from kubejobs.spec.schema_check import compile_check
from kubejobs.spec.schema_errors import SPEC_SCHEMA, WORKFLOW_SCHEMA, _registry, validator

ROOT = Path(__file__).resolve().parents[2]


def example_documents() -> list[Any]:
    paths = sorted(str(p) for p in (ROOT / "examples").iterdir() if p.suffix in (".json", ".yaml"))
    documents, problems = load_documents(paths)
    assert not problems
    return [d.data for d in documents]


def example_specs() -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for data in example_documents():
        # a workflow in the CLI's form is an array of specs
        specs += data if isinstance(data, list) else data.get("functionspecs", [data])
    return specs


# --- the cached skeleton ---------------------------------------------------------------


class _PureLoader(yaml.SafeLoader):
    """The pure-Python safe loader with the value tag, as when libyaml is missing."""


_PureLoader.add_constructor(templating.VALUE_TAG, templating._construct_value)


def _outcome(load: Any, text: str, values: list[Any]) -> Any:
    """What loading `text` with `values` gives: ("ok", data, types) or ("error", type, message)."""
    token = templating._VALUES.set(values)
    try:
        data = load(text)
    except Exception as err:
        return ("error", type(err), str(err))
    finally:
        templating._VALUES.reset(token)
    return ("ok", data, _types(data))


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {json.dumps(repr(k)): _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def _plain(text: str) -> Any:
    return yaml.load(text, Loader=templating._Loader)


def _pure(text: str) -> Any:
    return yaml.load(text, Loader=_PureLoader)


TEXTS = [
    "a: !kubejobs/value 0\nb: [!kubejobs/value 1, x, 2]\nc: {d: !kubejobs/value 2}\n",
    "- !kubejobs/value 0\n- !kubejobs/value 0\n- !kubejobs/value 2\n",
    "!kubejobs/value 1\n",
    "",
    "plain: text\nnumber: 0755\nflag: NO\nnull: ~\nfloat: 1.5e3\n",
    "when: 2024-01-02\nstamp: 2024-01-02T03:04:05Z\nbin: !!binary aGVsbG8=\n",
    # Aliases share one object: not cached, the plain load runs.
    "a: &x {k: !kubejobs/value 0}\nb: *x\n",
    "a: &x !kubejobs/value 0\nb: *x\n",
    "base: &b {k: 1}\nmerged: {<<: *b, v: !kubejobs/value 1}\n",
    # A value as a mapping key: not cached.
    "? !kubejobs/value 0\n: x\n",
    "? !kubejobs/value 1\n: x\n",
    # Mutable or unusual types: not cached.
    "s: !!set {a, b}\n",
    "o: !!omap [a: 1, b: 2]\n",
    # Errors: the same error as the plain load.
    "a: !kubejobs/value 9\n",
    "a: !kubejobs/value 0\nb: !kubejobs/value 7\n",
    "a: !kubejobs/value x\n",
    "a: !kubejobs/value [1]\n",
    "a: !kubejobs/value \u00b2\n",
    "a: [unclosed\n",
    "a: b: c\n",
    "a: !unknown 1\n",
    "bad: 2024-13-45\n",
    "? [a, b]\n: x\n",
    # Too deep to cache.
    "a: " + "[" * 150 + "!kubejobs/value 0" + "]" * 150 + "\n",
]
VALUES: list[Any] = ["v0", {"k": [1, 2]}, ["x"], None]


@pytest.mark.parametrize("text", TEXTS)
def test_cached_skeleton_loads_what_the_plain_load_gives(text: str) -> None:
    expected = _outcome(_plain, text, VALUES)
    for _ in range(2):  # the second load uses the cache
        assert _outcome(templating._load, text, copy.deepcopy(VALUES)) == expected


@pytest.mark.parametrize(
    ("text", "cached"),
    [
        ("a: !kubejobs/value 0\nb: [x, !kubejobs/value 1]\n", True),
        ("when: 2024-01-02\nn: 1\nf: 1.5\nz: ~\n", True),
        ("a: &x {k: 1}\nb: *x\n", False),
        ("? !kubejobs/value 0\n: x\n", False),
        ("s: !!set {a}\n", False),
        ("a: " + "[" * 150 + "1" + "]" * 150 + "\n", False),
        ("a: [unclosed\n", False),
    ],
)
def test_what_is_cached(text: str, cached: bool) -> None:
    assert (templating._skeleton(text) is not templating._NOT_CACHED) == cached


@pytest.mark.parametrize("text", TEXTS)
def test_c_loader_and_pure_python_loader_agree(text: str) -> None:
    """Same data; on bad text the same kind of error (libyaml words its problems differently)."""
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("libyaml is not installed: the pure-Python loader is the only one")
    c_loader, pure = _outcome(_plain, text, VALUES), _outcome(_pure, text, VALUES)
    assert c_loader[:2] == pure[:2]
    if c_loader[0] == "ok":
        assert c_loader == pure


def test_cached_skeleton_gives_independent_copies_that_hold_the_values_themselves() -> None:
    text = "a: {b: [!kubejobs/value 0, 1]}\nc: !kubejobs/value 1\n"
    first_values: list[Any] = [{"x": 1}, [2]]
    token = templating._VALUES.set(first_values)
    try:
        first = templating._load(text)
        first["a"]["b"].append("changed")
        first["a"]["new"] = 1
    finally:
        templating._VALUES.reset(token)
    assert first["a"]["b"][0] is first_values[0]
    assert first["c"] is first_values[1]
    token = templating._VALUES.set(["fresh", "values"])
    try:
        assert templating._load(text) == {"a": {"b": ["fresh", 1]}, "c": "values"}
    finally:
        templating._VALUES.reset(token)


def _rendered_texts() -> Iterator[tuple[str, list[Any]]]:
    renderer = Renderer(RenderSettings())
    for data in example_specs():
        pid = default_process_id(data)
        context = build_context(validate_spec(data), renderer.settings, pid)
        for name in ("job.yaml.j2", "service.yaml.j2"):
            values: list[Any] = []
            token = templating._VALUES.set(values)
            try:
                text = templating.render_template(renderer._env, name, context)
            finally:
                templating._VALUES.reset(token)
            yield text, values


def test_rendered_examples_load_the_same_every_way() -> None:
    for text, values in _rendered_texts():
        assert templating._skeleton(text) is not templating._NOT_CACHED
        expected = _outcome(_plain, text, values)
        assert expected[0] == "ok"
        assert _outcome(_pure, text, values) == expected
        assert _outcome(templating._load, text, values) == expected


def test_render_with_and_without_the_cache_is_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = Renderer(RenderSettings())
    specs = example_specs()
    cached = [renderer.render(validate_spec(s), default_process_id(s)) for s in specs]
    monkeypatch.setattr(templating, "_skeleton", lambda text: templating._NOT_CACHED)
    plain = [renderer.render(validate_spec(s), default_process_id(s)) for s in specs]
    assert json.dumps(cached) == json.dumps(plain)


# --- the compiled schema check ---------------------------------------------------------


def _property_names(schema: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        names |= set(schema.get("properties", {}))
        for value in schema.values():
            names |= _property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _property_names(value)
    return names


KEYS = sorted(
    _property_names(validator(SPEC_SCHEMA).schema)
    | _property_names(validator(WORKFLOW_SCHEMA).schema)
    | {"processes-per-node", "x", ""}
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-60000, 60000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -1.0, 0.0, 0.5, float("nan"), float("inf")])
    | st.sampled_from(["", "execute", "other", "/", "/data", "data", "500m", "busybox"])
    | st.text(max_size=4)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=8,
)
MUTATION = st.tuples(
    st.lists(st.integers(0, 50), max_size=6),
    st.sampled_from(["replace", "delete", "add"]),
    st.sampled_from(KEYS),
    JSON_VALUES,
)


def _mutated(document: Any, mutations: list[tuple[list[int], str, str, Any]]) -> Any:
    """A copy of `document` with each mutation applied at the place its numbers pick."""
    document = copy.deepcopy(document)
    for choices, action, key, value in mutations:
        parent: Any = None
        where: Any = None
        node = document
        for choice in choices:
            if isinstance(node, dict) and node:
                where = list(node)[choice % len(node)]
            elif isinstance(node, list) and node:
                where = choice % len(node)
            else:
                break
            parent, node = node, node[where]
        if action == "add" and isinstance(node, dict):
            node[key] = value
        elif parent is None:
            document = value if action == "replace" else document
        elif action == "delete":
            del parent[where]
        else:
            parent[where] = value
    return document


@pytest.mark.parametrize("schema_file", [SPEC_SCHEMA, WORKFLOW_SCHEMA])
def test_our_schemas_get_a_fast_check(schema_file: str) -> None:
    assert compile_check(validator(schema_file).schema, _registry()) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(example_documents()),
    st.lists(MUTATION, min_size=0, max_size=3),
)
def test_fast_check_agrees_with_jsonschema_on_mutated_examples(
    document: Any, mutations: list[tuple[list[int], str, str, Any]]
) -> None:
    document = _mutated(document, mutations)
    for schema_file in (SPEC_SCHEMA, WORKFLOW_SCHEMA):
        check = compile_check(validator(schema_file).schema, _registry())
        assert check is not None
        assert check(document) == validator(schema_file).is_valid(document)


SMALL_SCHEMAS: list[Any] = [
    True,
    False,
    {"type": "integer"},
    {"type": ["number", "null"]},
    {"type": "boolean"},
    {"properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"properties": {"a": True}, "additionalProperties": {"type": "integer"}},
    {"required": ["a", "x"]},
    {"items": {"minLength": 1}, "minItems": 2},
    {"items": False},
    {"minimum": 0, "maximum": 10},
    {"pattern": "^/"},
    {"const": "execute"},
    {"allOf": [{"type": "object"}, {"required": ["a"]}]},
    {"oneOf": [{"type": "string"}, {"minLength": 1}, {"type": "integer"}]},
    {"if": {"required": ["a"]}, "then": {"required": ["x"]}, "else": {"type": "array"}},
    {"if": {"const": "a"}},
    {"$defs": {"n": {"type": "integer"}}, "items": {"$ref": "#/$defs/n"}},
]


VALUES_OF_EACH_KIND: list[Any] = [
    *[None, True, False, 0, 1, -1, 5, 10, 11, 1.0, 0.5, -0.5, float("nan"), float("inf")],
    *["", "a", "/", "/a", "execute", "executes"],
    *[[], [1], [""], ["a"], ["a", "b"], [1, "x"], [[]]],
    *[{}, {"a": 1}, {"a": "s"}, {"x": 1}, {"a": "s", "x": 2}, {"a": None, "x": None}, {"b": 1}],
]


@pytest.mark.parametrize("schema", SMALL_SCHEMAS)
def test_fast_check_agrees_with_jsonschema_keyword_by_keyword(schema: Any) -> None:
    check = compile_check(schema, Registry())
    assert check is not None
    for value in VALUES_OF_EACH_KIND:
        assert check(value) == Draft202012Validator(schema).is_valid(value), value


@pytest.mark.parametrize("schema", SMALL_SCHEMAS)
@settings(max_examples=50, deadline=None)
@given(SCALARS | JSON_VALUES)
def test_fast_check_agrees_with_jsonschema_on_any_value(schema: Any, value: Any) -> None:
    check = compile_check(schema, Registry())
    assert check is not None
    assert check(value) == Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize(
    "schema",
    [
        {"enum": ["a"]},
        {"format": "email"},
        {"const": 1},
        {"type": "any"},
        {"patternProperties": {"^a": True}, "additionalProperties": False},
        {"prefixItems": [True], "items": False},
        {"$ref": "#/$defs/missing"},
        {"$defs": {"loop": {"items": {"$ref": "#/$defs/loop"}}}, "$ref": "#/$defs/loop"},
        {"$schema": "http://json-schema.org/draft-07/schema#"},
        {"properties": {"a": {"unevaluatedProperties": False}}},
    ],
)
def test_schemas_with_other_keywords_get_no_fast_check(schema: Any) -> None:
    assert compile_check(schema, Registry()) is None


# --- tojson's copy -----------------------------------------------------------------------


class _Text(str):
    pass


def _tojson_outcome(value: Any) -> Any:
    values: list[Any] = []
    token = templating._VALUES.set(values)
    try:
        templating.to_json([value])  # in a list: the copy, not the scalar shortcut
    except Exception as err:
        return ("error", type(err), str(err))
    finally:
        templating._VALUES.reset(token)
    return ("ok", json.dumps(values[0]), _types(values[0]))


def _round_trip_outcome(value: Any) -> Any:
    try:
        copied = json.loads(json.dumps([value], allow_nan=False, default=templating._not_json))
    except Exception as err:
        return ("error", type(err), str(err))
    return ("ok", json.dumps(copied), _types(copied))


ANY_VALUES = st.recursive(
    SCALARS
    | st.integers()
    | st.sampled_from([2**63, -(2**63), float("-inf"), _Text("t"), b"x", object()])
    | st.builds(pow, st.just(10), st.just(5000)),  # too long for json.dumps to write
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=3) | st.integers() | st.booleans() | st.none() | st.floats(),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(ANY_VALUES)
def test_tojson_copies_what_the_json_round_trip_gives(value: Any) -> None:
    assert _tojson_outcome(value) == _round_trip_outcome(value)


def test_tojson_copy_of_unusual_data_is_the_round_trip() -> None:
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    circular: dict[str, Any] = {}
    circular["self"] = circular
    unusual = [
        *[deep, circular, _Text("t"), (1, "a"), {1: "a", "1": "b"}, {True: 1, None: 2}],
        *[2**63, -(2**63), 2**63 - 1, 10**5000, float("nan"), float("inf"), -0.0, 1e300],
        *[b"x", object(), {"a": {1, 2}}],
    ]
    for value in unusual:
        assert _tojson_outcome(value) == _round_trip_outcome(value), value


def test_tojson_copy_is_independent() -> None:
    original: dict[str, Any] = {"a": [1, {"b": "c"}]}
    values: list[Any] = []
    token = templating._VALUES.set(values)
    try:
        templating.to_json(original)
    finally:
        templating._VALUES.reset(token)
    original["a"][1]["b"] = "changed"
    original["a"].append(2)
    assert values[0] == {"a": [1, {"b": "c"}]}
