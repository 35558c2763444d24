"""The Jinja environment: sandboxed, StrictUndefined, and every value through tojson.

A template produces YAML text; values may enter it only as JSON (valid YAML that
keeps its type and cannot inject keys), which `finalize` enforces: `{{ x }}`
without `| tojson` is an error naming the template and line. Custom templates in
a folder are layered over the built-ins, which stay reachable as `builtin/<name>`.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kubejobs.errors import TemplateError
from kubejobs.resources import data_dir

TEMPLATE_SUFFIX = ".yaml.j2"

# YAML readers refuse some characters even inside quoted scalars, and fold its extra
# line breaks (NEL, LS, PS) into spaces, so JSON text carries these as escapes
# (with ensure_ascii=False, JSON leaves them raw).
_YAML_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]"
)


class JsonText(str):
    """Text produced by `tojson`: the only kind of value a template may output."""


def _not_json(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises "'name' is undefined" here
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


def to_json(value: Any) -> JsonText:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=_not_json)
    return JsonText(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _finalize(value: Any) -> Any:
    if isinstance(value, JsonText):
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


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one template; any failure becomes a TemplateError naming file and line."""
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
