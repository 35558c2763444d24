"""A fast yes/no answer to "would jsonschema find any error in this document?".

jsonschema builds a validator object per subschema it descends into, which costs
~0.25 ms per spec even when there is nothing to report, and almost every spec an
executor sees is valid. This module turns a schema into plain closures that give
jsonschema's verdict, exactly, for the keywords our schemas use; when the verdict
is "invalid", the caller asks jsonschema for the errors, so every message still
comes from jsonschema. A schema with any other validating keyword gets no fast
check at all (compile_check returns None) rather than an approximate one.

Each keyword below mirrors jsonschema's implementation for Draft 2020-12
(jsonschema/_keywords.py): a keyword only looks at instances of its type, and
types are decided by the validator's own type checker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by referencing

Check = Callable[[Any], bool]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The Python types that certainly are each JSON type (the type checker decides the rest).
_CERTAIN = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class _Unsupported(Exception):
    """The schema uses something this module does not mirror."""


def compile_check(schema: Mapping[str, Any], registry: Registry[Any]) -> Check | None:
    """A function telling whether Draft202012Validator(schema, registry=registry) finds no error.

    None when the schema uses something this module does not mirror.
    """
    try:
        resolver = registry.resolver_with_root(DRAFT202012.create_resource(schema))
        return _Compiler().compile(schema, resolver, depth=0)
    except Exception:  # _Unsupported, or a schema jsonschema itself would choke on
        return None


class _Compiler:
    keywords = Draft202012Validator.VALIDATORS
    checker = Draft202012Validator.TYPE_CHECKER

    def is_type(self, name: str) -> Check:
        if name not in _CERTAIN:
            raise _Unsupported(name)
        certain, checker = _CERTAIN[name], self.checker
        # type() first: exact and fast for JSON data; the type checker decides anything else.
        return lambda x: type(x) in certain or checker.is_type(x, name)

    def compile(self, schema: Any, resolver: Resolver[Any], depth: int) -> Check:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, dict) or depth > 50:
            raise _Unsupported("schema")
        if schema.get("$schema", _DIALECT) != _DIALECT:
            raise _Unsupported("$schema")
        # As jsonschema does when it descends: a subschema with $id changes the base URI.
        resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
        checks = [
            self.keyword(key, value, schema, resolver, depth)
            for key, value in schema.items()
            if key in self.keywords
        ]
        if len(checks) == 1:
            return checks[0]

        def all_pass(x: Any) -> bool:
            # A loop, not all() over a generator: this runs for every node checked.
            for check in checks:  # noqa: SIM110
                if not check(x):
                    return False
            return True

        return all_pass

    def keyword(
        self, key: str, value: Any, schema: dict[str, Any], resolver: Resolver[Any], depth: int
    ) -> Check:
        def sub(subschema: Any) -> Check:
            return self.compile(subschema, resolver, depth + 1)

        is_object, is_array = self.is_type("object"), self.is_type("array")
        is_string, is_number = self.is_type("string"), self.is_type("number")
        if key == "type":
            types = [self.is_type(name) for name in (value if isinstance(value, list) else [value])]
            if len(types) == 1:
                return types[0]
            return lambda x: any(t(x) for t in types)
        if key == "properties":
            props = {name: sub(s) for name, s in value.items()}

            def properties(x: Any) -> bool:
                if not is_object(x):
                    return True
                for name, item in x.items():
                    check = props.get(name)
                    if check is not None and not check(item):
                        return False
                return True

            return properties
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise _Unsupported(key)
            known = frozenset(schema.get("properties", {}))
            if value is False:
                return lambda x: not is_object(x) or x.keys() <= known
            extra = sub(value)
            return lambda x: (
                not is_object(x)
                or all(extra(item) for name, item in x.items() if name not in known)
            )
        if key == "required":
            required = frozenset(value)
            return lambda x: not is_object(x) or x.keys() >= required
        if key == "items":
            if "prefixItems" in schema:
                raise _Unsupported(key)
            each = sub(value)
            return lambda x: not is_array(x) or all(each(item) for item in x)
        if key == "minItems":
            return lambda x: not is_array(x) or len(x) >= value
        if key == "minLength":
            return lambda x: not is_string(x) or len(x) >= value
        if key == "minimum":
            return lambda x: not is_number(x) or not x < value
        if key == "maximum":
            return lambda x: not is_number(x) or not x > value
        if key == "pattern":
            search = re.compile(value).search
            return lambda x: not is_string(x) or search(x) is not None
        if key == "const" and isinstance(value, str):
            # jsonschema's equal() compares with == when either side is a string.
            return lambda x: x == value
        if key == "allOf":
            subs = [sub(s) for s in value]
            return lambda x: all(s(x) for s in subs)
        if key == "oneOf":
            subs = [sub(s) for s in value]
            return lambda x: sum(1 for s in subs if s(x)) == 1
        if key == "if":
            condition = sub(value)
            then = sub(schema.get("then", True))
            otherwise = sub(schema.get("else", True))
            return lambda x: then(x) if condition(x) else otherwise(x)
        if key == "$ref":
            try:
                resolved = resolver.lookup(value)
            except Exception as err:  # unresolvable: leave the error to jsonschema
                raise _Unsupported(key) from err
            return self.compile(resolved.contents, resolved.resolver, depth + 1)
        raise _Unsupported(key)
