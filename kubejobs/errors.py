"""The one error root, and problems that point at the input.

Library code raises these; only the CLI maps them to messages and exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input, located as FILE::JSONPATH."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}::{self.path}: {self.message}"


class KubejobsError(Exception):
    """Root of every error kubejobs raises on purpose."""


class InvalidInput(KubejobsError):
    """The input (a spec, a workflow, settings) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TemplateError(KubejobsError):
    """A template could not be rendered; the message names the template file and line."""


class SettingsError(KubejobsError):
    """Settings (flags, environment, config file) are invalid."""
