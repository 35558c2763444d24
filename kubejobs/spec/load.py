"""Read spec and workflow files (JSON or YAML) into plain data, with located parse errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kubejobs.errors import InvalidInput, Problem

DocumentKind = Literal["spec", "workflow"]


@dataclass(frozen=True)
class SpecDocument:
    """One parsed file: a function spec or a workflow.

    A workflow comes in two forms: the array of function specs that
    `colonies workflow submit --spec` reads, and the object the API and pycolonies
    send ({"colonyname", "functionspecs"}). Any array is taken for a workflow (a
    spec is never one), an object for a workflow when it has `functionspecs`.
    """

    source: str
    data: Any

    @property
    def kind(self) -> DocumentKind:
        if isinstance(self.data, list):
            return "workflow"
        if isinstance(self.data, dict) and "functionspecs" in self.data:
            return "workflow"
        return "spec"

    def spec_list(self) -> tuple[list[str | int], list[Any]]:
        """A workflow's specs and where their list is: the document itself, or `functionspecs`
        (no specs when that is not a list: the schema reports it)."""
        if isinstance(self.data, list):
            return [], self.data
        specs = self.data.get("functionspecs") if isinstance(self.data, dict) else None
        return ["functionspecs"], specs if isinstance(specs, list) else []

    def specs(self) -> list[tuple[str, Any]]:
        """(JSON path in the file, data) of each spec: the document, or each of a workflow's."""
        if self.kind == "spec":
            return [("$", self.data)]
        prefix, specs = self.spec_list()
        where = "$.functionspecs" if prefix else "$"
        return [(f"{where}[{i}]", spec) for i, spec in enumerate(specs)]


def parse_document(text: str, source: str) -> SpecDocument:
    """Parse JSON (or YAML, a superset) text; a syntax error becomes a located Problem."""
    if source.endswith((".yaml", ".yml")):
        return SpecDocument(source, _parse_yaml(text, source))
    try:
        return SpecDocument(source, json.loads(text))
    except json.JSONDecodeError as err:
        if source.endswith(".json"):
            raise InvalidInput(
                [
                    Problem(
                        source,
                        "$",
                        f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}",
                    )
                ]
            ) from None
    return SpecDocument(source, _parse_yaml(text, source))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InvalidInput([Problem(source, "$", f"invalid YAML{where}: {err.problem}")]) from None
    except yaml.YAMLError as err:
        raise InvalidInput([Problem(source, "$", f"invalid YAML: {err}")]) from None


def load_documents(paths: Iterable[str]) -> tuple[list[SpecDocument], list[Problem]]:
    """Parse every file; unreadable or unparsable files become problems, not exceptions."""
    documents: list[SpecDocument] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(path, "$", f"cannot read file: {err}"))
            continue
        try:
            documents.append(parse_document(text, path))
        except InvalidInput as err:
            problems.extend(err.problems)
    return documents, problems
