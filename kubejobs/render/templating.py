"""The Jinja environment: sandboxed, StrictUndefined, and every value through tojson.

A template produces the YAML *structure*; values enter only through `tojson`,
which `finalize` enforces (`{{ x }}` without `| tojson` is an error naming the
template and line). `tojson` converts the value to JSON data (a copy, JSON types
only) and writes a tagged reference to it (`!kubejobs/value 3`) into the text;
the safe YAML loader puts the JSON data itself in that place. So no value is ever
parsed as YAML: `NO`, `0755`, `a: b`, newlines or YAML line breaks cannot change
a value or add keys, and the YAML parser only reads the small skeleton (several
times faster than parsing every value as YAML text).

Custom templates in a folder are layered over the built-ins, which stay reachable
as `builtin/<name>`.
"""

from __future__ import annotations

import json
import sys
import traceback
from contextvars import ContextVar
from functools import cache
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


def to_json(value: Any) -> ValueRef:
    values = _VALUES.get()
    if values is None:
        raise TemplateError("tojson is only available while kubejobs renders a template")
    if isinstance(value, str | bool | int) or value is None:
        values.append(value)  # immutable JSON scalars need no copy
    else:
        # The JSON round trip makes an independent copy holding JSON types only.
        values.append(json.loads(json.dumps(value, allow_nan=False, default=_not_json)))
    return ValueRef(f"{VALUE_TAG} {len(values) - 1}")


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
    env.filters["tojson"] = to_json
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


def render_data(env: jinja2.Environment, name: str, context: dict[str, Any]) -> Any:
    """Render one template and parse the result; TemplateError names file and line."""
    token = _VALUES.set([])
    try:
        text = render_template(env, name, context)
        try:
            return yaml.load(text, Loader=_Loader)
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
