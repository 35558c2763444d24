"""Function specs: load files, validate against schema/ plus semantic checks, build typed specs."""

from kubejobs.spec.load import SpecDocument, load_documents, parse_document
from kubejobs.spec.model import GPU, FileSystem, FsDir, FsSnapshot, FunctionSpec
from kubejobs.spec.validate import validate_document, validate_spec

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
