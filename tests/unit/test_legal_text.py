"""Legal text reaches the API server as YAML reads it; text no program can take is refused
by validation with its path (the properties against the real API server are in
tests/integration/test_legal_text_apiserver.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kubejobs.adapters.kube import apply_body
from kubejobs.errors import InvalidInput
from kubejobs.spec import validate_spec
from tests.legal_text import NASTY
from tests.unit.helpers import spec_with
from tests.unit.test_cli import kubejobs

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@pytest.mark.parametrize("text", NASTY)
def test_apply_body_is_yaml_that_reads_back_exactly(text: str) -> None:
    obj = {"metadata": {"annotations": {"a": text}}, "args": [text, "rocket \U0001f680 ok"]}
    body = apply_body(obj)
    assert not _SURROGATE_ESCAPE.search(body.decode("utf-8")), body
    assert json.loads(body) == obj
    # PyYAML reads YAML 1.1 as Kubernetes' decoder does: raw YAML line breaks and
    # non-printable characters would be folded or refused, so they must be escapes.
    assert yaml.safe_load(body.decode("utf-8")) == obj


def test_astral_characters_are_sent_as_utf8_not_surrogate_escapes() -> None:
    body = apply_body({"args": ["\U0001f680", "\u2028", "\x7f", "\ufeff"]})
    assert body == '{"args":["\U0001f680","\\u2028","\\u007f","\\ufeff"]}'.encode()


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ({"kwargs": {"args": ["ok", "a\x00b"]}}, "$.kwargs.args[1]"),
        ({"kwargs": {"cmd": ["echo", "\ud83d"]}}, "$.kwargs.cmd[1]"),
        ({"env": {"GREETING": "hi\x00"}}, "$.env.GREETING"),
        ({"kwargs": {"init-cmd": "echo \ude80"}}, "$.kwargs['init-cmd']"),
        ({"nodename": "a\x00"}, "$.nodename"),
    ],
)
def test_text_no_program_can_take_is_refused_with_its_path(where: dict, path: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput) as err:
        validate_spec(spec_with(**where), "bad.json")
    assert [p.path for p in err.value.problems] == [path], err.value.problems


def test_validate_names_the_nul_and_the_lone_surrogate_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    # As a user writes them in JSON: escapes, the surrogate without its pair.
    path.write_text(
        json.dumps(
            spec_with(kwargs={"args": ["a\x00b", "\ud83d!"]}, env={"X": "rocket \U0001f680"})
        )
    )
    result = kubejobs("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}::$.kwargs.args[0]: value holds a NUL character at offset 1: a program's "
        "arguments and environment, and the names and paths kubejobs makes of a spec, are C "
        "strings that end at a NUL",
        f"{path}::$.kwargs.args[1]: value holds a lone UTF-16 surrogate \\ud83d at offset 0: "
        "it is not a Unicode character (write the character itself, or both halves of its "
        "surrogate pair)",
    ]


def test_every_plane_and_token_is_legal() -> None:
    spec = validate_spec(spec_with(kwargs={"args": NASTY}, env={"ALL": "".join(NASTY)}))
    assert spec.args == tuple(NASTY)
