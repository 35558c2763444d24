"""The Jinja environment: sandboxed, StrictUndefined, and every value through tojson.

A template produces the YAML *structure*; values enter only through `tojson`,
which `finalize` enforces (`{{ x }}` without `| tojson` is an error naming the
template and line). `tojson` converts the value to JSON data (a copy, JSON types
only) and writes a tagged reference to it (`!kubejobs/value 3`) into the text;
the safe YAML loader puts the JSON data itself in that place. So no value is ever
parsed as YAML: `NO`, `0755`, `a: b`, newlines or YAML line breaks cannot change
a value or add keys, and the YAML parser only reads the small skeleton (several
times faster than parsing every value as YAML text).

The skeleton text depends on the template and the shape of the spec (which
optional fields, how many containers), not on the values, so specs of the same
shape render the same text: its parse is cached, and each render only copies the
cached structure with its values put in (several times faster than parsing).

Custom templates in a folder are layered over the built-ins, which stay reachable
as `builtin/<name>`.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import traceback
from contextvars import ContextVar
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kubejobs.errors import TemplateError
from kubejobs.resources import data_dir

TEMPLATE_SUFFIX = ".yaml.j2"
# libyaml's parser is several times faster; the pure-Python one is the fallback.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

VALUE_TAG = "!kubejobs/value"
# The values `tojson` has taken during the current render, indexed by the tags.
_VALUES: ContextVar[list[Any] | None] = ContextVar("kubejobs_template_values", default=None)


class ValueRef(str):
    """Text produced by `tojson` (a tagged reference): the only output a template may make."""


def _not_json(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises "'name' is undefined" here
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


class _NotPlain(Exception):
    """A value the JSON round trip would convert or refuse: the round trip itself decides."""


_PLAIN_MAX_DEPTH = 100  # deeper (or circular) data goes through the round trip
_PLAIN_MAX_INT = 2**63  # far below the int size json.dumps refuses to write


def _plain_copy(value: Any, depth: int = 0) -> Any:
    """json.loads(json.dumps(value)) for data that is JSON already, ~3x faster (no text).

    Only exact dict (str keys), list, str, bool, None, small int and finite float
    are copied here, and those come back from the round trip equal and of the same
    type. Anything else raises _NotPlain.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int and -_PLAIN_MAX_INT < value < _PLAIN_MAX_INT:
        return value
    if kind is float and math.isfinite(value):
        return value
    if depth < _PLAIN_MAX_DEPTH:
        if kind is list:
            return [_plain_copy(item, depth + 1) for item in value]
        if kind is dict and all(type(key) is str for key in value):
            return {key: _plain_copy(item, depth + 1) for key, item in value.items()}
    raise _NotPlain


def to_json(value: Any) -> ValueRef:
    values = _VALUES.get()
    if values is None:
        raise TemplateError("tojson is only available while kubejobs renders a template")
    if isinstance(value, str | bool | int) or value is None:
        values.append(value)  # immutable JSON scalars need no copy
    else:
        # An independent copy holding JSON types only: what the JSON round trip
        # makes, built directly when the data is plain JSON already.
        try:
            values.append(_plain_copy(value))
        except _NotPlain:
            values.append(json.loads(json.dumps(value, allow_nan=False, default=_not_json)))
    return ValueRef(f"{VALUE_TAG} {len(values) - 1}")


@jinja2.pass_context
def _tojson_filter(context: Any, value: Any) -> ValueRef:
    """tojson as a filter. Taking the context keeps Jinja from calling it while it
    compiles a template (it folds filters of constants, `{{ "x" | tojson }}`): the
    value would be recorded once, in whichever render compiled the template, and
    its reference baked into the template would name another value in every
    later render."""
    return to_json(value)


def _finalize(value: Any) -> Any:
    if isinstance(value, ValueRef):
        return value
    raise TemplateError(
        f"value {str(value)[:40]!r} is output without '| tojson'; "
        "every value must enter the YAML through tojson"
    )


@cache
def _builtin_loader() -> jinja2.BaseLoader:
    return jinja2.FileSystemLoader(str(data_dir("templates")))


def environment(templates_dir: str | None = None) -> jinja2.Environment:
    builtin = _builtin_loader()
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise TemplateError(f"{templates_dir}: templates folder does not exist")
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders += [builtin, jinja2.PrefixLoader({"builtin": builtin})]
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = _tojson_filter
    env.policies["json.dumps_function"] = None
    return env


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader plus the value tag."""


def _construct_value(loader: Any, node: yaml.Node) -> Any:
    values = _VALUES.get()
    index = loader.construct_scalar(node)
    if values is None or not index.isdigit() or int(index) >= len(values):
        raise TemplateError(f"{VALUE_TAG} {index!r} was not written by tojson")
    return values[int(index)]


_Loader.add_constructor(VALUE_TAG, _construct_value)


class _Slot:
    """The place of a tagged value in a cached skeleton: index into the render's values."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _SkeletonLoader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, with each value tag parsed into a _Slot instead of its value."""


def _construct_slot(loader: Any, node: yaml.Node) -> _Slot:
    index = loader.construct_scalar(node)
    if not index.isdigit():
        raise TemplateError(f"{VALUE_TAG} {index!r} was not written by tojson")
    return _Slot(int(index))


_SkeletonLoader.add_constructor(VALUE_TAG, _construct_slot)

# Scalars the safe loader makes that are immutable, so renders may share them.
_SHAREABLE = (str, int, float, bool, type(None), bytes, datetime.date)
_NOT_CACHED = object()
_MAX_DEPTH = 100  # a Job manifest nests about 10 deep


@lru_cache(maxsize=256)
def _skeleton(text: str) -> Any:
    """The parsed text with _Slots for the values, or _NOT_CACHED when it cannot be reused.

    It cannot be reused when parsing fails (the plain load then raises the very
    error it always raised), or when copying it with the values put in might not
    give what the plain load gives: a value used as a mapping key, a node shared
    through a YAML alias, a mutable or unusual type (sets, !!omap pairs), or
    nesting deep enough to worry the recursion in _fill.
    """
    try:
        tree = yaml.load(text, Loader=_SkeletonLoader)
    except Exception:  # whatever it is, the plain load raises it again for the caller
        return _NOT_CACHED
    seen: set[int] = set()

    def reusable(node: Any, depth: int) -> bool:
        if isinstance(node, _Slot):
            return True
        if type(node) is not dict and type(node) is not list:
            return isinstance(node, _SHAREABLE)
        if id(node) in seen or depth > _MAX_DEPTH:
            return False
        seen.add(id(node))
        if isinstance(node, dict):
            return all(
                isinstance(key, _SHAREABLE) and reusable(value, depth + 1)
                for key, value in node.items()
            )
        return all(reusable(item, depth + 1) for item in node)

    return tree if reusable(tree, 0) else _NOT_CACHED


class _Unfillable(Exception):
    """A slot names no value of this render: the plain load reports it."""


def _fill(node: Any, values: list[Any]) -> Any:
    """A fresh copy of a cached skeleton, each _Slot replaced by its value."""
    if type(node) is dict:
        return {key: _fill(value, values) for key, value in node.items()}
    if type(node) is list:
        return [_fill(item, values) for item in node]
    if isinstance(node, _Slot):
        if node.index >= len(values):
            raise _Unfillable
        return values[node.index]
    return node


def _load(text: str) -> Any:
    """yaml.load(text, Loader=_Loader), from the cached skeleton when there is one."""
    values = _VALUES.get()
    skeleton = _skeleton(text)
    if skeleton is not _NOT_CACHED and values is not None:
        try:
            return _fill(skeleton, values)
        except _Unfillable:
            pass
    return yaml.load(text, Loader=_Loader)


def render_data(env: jinja2.Environment, name: str, context: dict[str, Any]) -> Any:
    """Render one template and parse the result; TemplateError names file and line."""
    token = _VALUES.set([])
    try:
        text = render_template(env, name, context)
        try:
            return _load(text)
        except yaml.MarkedYAMLError as err:
            line = err.problem_mark.line if err.problem_mark else 0
            lines = text.splitlines()
            rendered = lines[line] if line < len(lines) else ""
            raise TemplateError(
                f"{name}: rendered text is not YAML at rendered line {line + 1} "
                f"({rendered.strip()!r}): {err.problem}"
            ) from None
    finally:
        _VALUES.reset(token)


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one template to text; any failure becomes a TemplateError naming file and line."""
    try:
        template = env.get_template(name)
        return template.render(context)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(
            f"{err.filename or err.name or name}:{err.lineno}: {err.message}"
        ) from None
    except jinja2.TemplateNotFound as err:
        raise TemplateError(f"template {err.name!r} not found") from None
    except (
        jinja2.TemplateError,
        TemplateError,
        TypeError,
        ValueError,
        ArithmeticError,
        LookupError,
        AttributeError,
    ) as err:
        where = _template_location(name)
        message = err.message if isinstance(err, jinja2.TemplateError) and err.message else str(err)
        raise TemplateError(f"{where}: {message}") from None


def _template_location(default: str) -> str:
    """The innermost template frame of the exception being handled, as FILE:LINE."""
    tb = sys.exc_info()[2]
    found = default
    for frame, lineno in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if filename.endswith(TEMPLATE_SUFFIX) or filename.endswith(".j2"):
            found = f"{filename}:{lineno}"
    return found
