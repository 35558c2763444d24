"""Settings: typed, frozen dataclasses filled from a config file, KUBEJOBS_* env vars and flags.

Precedence, highest first: explicit overrides (command-line flags), environment
variables named KUBEJOBS_<FIELD> (upper case), the YAML/JSON config file (keys are
field names, '-' and '_' both accepted), then the field defaults. Values are
checked against the field types here, at the edge, so code inside can trust them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kubejobs.errors import SettingsError

T = TypeVar("T")
ENV_PREFIX = "KUBEJOBS_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(
    cls: type[T],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build `cls` (a frozen dataclass) from the layered sources; SettingsError names the source."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    if config_file:
        for key, value in _read_config(config_file).items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise SettingsError(f"{config_file}: unknown setting {key!r}")
            values[name] = _coerce(value, hints[name], f"{config_file}: {key}")
    for name in fields:
        text = (environ or {}).get(env_name(name))
        if text is not None:
            values[name] = _coerce_text(text, hints[name], env_name(name))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(value, hints[name], f"--{name.replace('_', '-')}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise SettingsError(str(err)) from None


def _read_config(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SettingsError(f"{path}: cannot read config file: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a config file holds a mapping of setting names to values")
    return data


def _coerce_text(text: str, hint: Any, where: str) -> Any:
    """An environment variable's text as the field's type: JSON for lists and mappings."""
    origin = typing.get_origin(hint)
    base = _strip_optional(hint)
    if base is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise SettingsError(f"{where}: expected true or false, got {text!r}")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{where}: expected an integer, got {text!r}") from None
    if base is str or (origin is None and base is str):
        return text
    if (
        typing.get_origin(base) is tuple
        and typing.get_args(base)[0] is str
        and not text.lstrip().startswith("[")
    ):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise SettingsError(f"{where}: expected JSON, got {text!r}") from None
    return _coerce(value, hint, where)


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _coerce(value: Any, hint: Any, where: str) -> Any:
    base = _strip_optional(hint)
    if value is None and base is not hint:
        return None
    origin = typing.get_origin(base)
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _coerce_text(value, bool, where)
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _coerce_text(value, int, where)
    elif base is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        item = typing.get_args(base)[0]
        if isinstance(value, str) and item is str:
            return _coerce_text(value, base, where)
        if isinstance(value, list | tuple):
            return tuple(_freeze(_coerce(v, item, where)) for v in value)
    elif origin in (dict, Mapping, typing.Mapping) or base is dict:
        if isinstance(value, dict):
            return types.MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    elif base is Any:
        return _freeze(value)
    raise SettingsError(
        f"{where}: expected {_type_text(base)}, got {type(value).__name__} {value!r}"
    )


def _freeze(value: Any) -> Any:
    """Nested config values (tolerations, resources) as read-only mappings and tuples."""
    if isinstance(value, dict) and not isinstance(value, types.MappingProxyType):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _type_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def thaw(value: Any) -> Any:
    """Frozen settings values back to plain dicts and lists (for manifests)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
