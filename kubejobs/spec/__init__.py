"""Function specs: load files, validate against schema/ plus semantic checks, build typed specs.

The names below load their module on first use: the in-pod programs need only
the model (kubejobs.spec.model), and importing the validator (jsonschema) would
add to the start of every data stager, which the program waits for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubejobs.spec.load import SpecDocument, load_documents, parse_document
    from kubejobs.spec.model import GPU, FileSystem, FsDir, FsSnapshot, FunctionSpec
    from kubejobs.spec.validate import validate_document, validate_spec

_MODULES = {
    "GPU": "model",
    "FileSystem": "model",
    "FsDir": "model",
    "FsSnapshot": "model",
    "FunctionSpec": "model",
    "SpecDocument": "load",
    "load_documents": "load",
    "parse_document": "load",
    "validate_document": "validate",
    "validate_spec": "validate",
}

__all__ = [
    "GPU",
    "FileSystem",
    "FsDir",
    "FsSnapshot",
    "FunctionSpec",
    "SpecDocument",
    "load_documents",
    "parse_document",
    "validate_document",
    "validate_spec",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'kubejobs.spec' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kubejobs.spec.{module}"), name)
