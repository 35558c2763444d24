"""Text a user may legally write, and function specs made of it: one generator for the unit
properties, the properties against the real API server and `kubejobs check`.

The strings mix what breaks text-built YAML, Jinja and shells with characters of every
Unicode plane; a few per cent are illegal (a NUL, a lone UTF-16 surrogate), which
`kubejobs validate` must refuse with their path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from kubejobs.spec.schema_errors import json_path

# YAML's special tokens, Jinja, shells, quoting, YAML's line breaks and controls.
TOKENS = [
    "yes",
    "no",
    "NO",
    "on",
    "~",
    "null",
    "0x1F",
    "1e3",
    ".inf",
    "0755",
    "1.10",
    "<<",
    "&a",
    "*a",
    "!!str",
    "!!python/object",
    "%",
    "%TAG",
    "---",
    "...",
    "a: b",
    "- x",
    "#",
    "{{ x }}",
    "{{ job_name }}",
    "{% raw %}",
    "{% if %}",
    "{# c #}",
    "$(x)",
    "`x`",
    "$HOME",
    "${HOME}",
    "$$",
    "$(HOME)",
    "'\"",
    "\\",
    "\\u0041",
    "{processid}",
    "\n",
    "\r\n",
    "\t",
    "\x01",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "e\u0301",
]
# One character from every plane that has any: 1 (emoji), 2 and 3 (CJK), 14 (tags),
# 15 and 16 (private use), besides the BMP's own.
PLANES = [
    "\U0001f680",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U00020000",
    "\U0002a6d6",
    "\U00030000",
    "\U000e0041",
    "\U000f0000",
    "\U0010fffd",
    "\u00e9",
    "\u4e2d",
    "\ud7ff",
    "\ue000",
]
NASTY = TOKENS + PLANES
ILLEGAL = ["\x00", "\ud83d", "\ude80"]
# The nastiest, for tests that run them end to end through real programs.
END_TO_END = [
    "rocket \U0001f680 ok",
    "yes",
    "~",
    "{{ x }} {% raw %}",
    "$(x) `x` $HOME",
    "a: b\n- c\u2028d",
    "\U00020000\U000e0041\U0010fffd",
    "*a &a !!str --- %",
]

text = st.one_of(
    st.sampled_from(NASTY),
    st.text(),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=5)).map("".join),
)
long_text = st.sampled_from(NASTY).map(lambda s: (s * 20_000)[:20_000])
env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not n.startswith(("COLONIES_", "KUBEJOBS_"))
)
# A parent's output as the child receives it: any JSON value of legal text. The server
# decodes JSON in Go, which turns a lone surrogate into U+FFFD, so none arrives; a NUL
# (JSON's \u0000) may.
output_text = text | st.just("nul \x00 inside")
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | output_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(output_text, inner, max_size=3),
    max_leaves=6,
)


@dataclass
class Drawn:
    """A generated spec with the values it was made from, to compare the manifest with."""

    words: list[str]
    args: list[str]
    init: str | None
    env: dict[str, str]
    colony: str
    nodename: str
    inputs: list[Any]
    nodes: int
    # (which string, which illegal text): about one example in four is poisoned
    poison: tuple[int, str] | None = None
    spec: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        # copies: poisoning the spec must not change the values it is compared with
        kwargs: dict[str, Any] = {
            "docker-image": "busybox",
            "cmd": [*self.words],
            "args": [*self.args],
        }
        if self.init is not None:
            kwargs["init-cmd"] = self.init
        self.spec = {
            "funcname": "execute",
            "kwargs": kwargs,
            "env": dict(self.env),
            "nodename": self.nodename,
            "conditions": {"colonyname": self.colony, "nodes": self.nodes},
        }
        if self.poison:
            index, bad = self.poison
            places = [p for p, _, is_key in _strings(self.spec, []) if not is_key]
            _poison(self.spec, places[index % len(places)], bad)

    def illegal_paths(self) -> set[str]:
        """JSON paths of the strings (keys or values) no program can receive."""
        return {json_path(p) for p, s, _ in _strings(self.spec, []) if _ILLEGAL.search(s)}

    def process_id(self) -> str:
        """A process id of its own, so every example is its own Job."""
        return hashlib.sha256(
            json.dumps([self.spec, self.inputs], sort_keys=True).encode("utf-8", "surrogatepass")
        ).hexdigest()


specs = st.builds(
    Drawn,
    words=st.lists(text, min_size=1, max_size=3),
    args=st.lists(text | long_text, max_size=3),
    init=st.none() | text,
    env=st.dictionaries(env_name, text | long_text, max_size=3),
    colony=text,
    nodename=text,
    inputs=st.lists(json_value, max_size=3),
    nodes=st.integers(1, 2),
    poison=st.none()
    | st.none()
    | st.none()
    | st.tuples(st.integers(0, 20), st.sampled_from(ILLEGAL)),
)


def _poison(spec: dict[str, Any], path: list[str | int], bad: str) -> None:
    """Put `bad` in the middle of the string at `path`."""
    parent: Any = spec
    for part in path[:-1]:
        parent = parent[part]
    value = parent[path[-1]]
    parent[path[-1]] = value[: len(value) // 2] + bad + value[len(value) // 2 :]


_ILLEGAL = re.compile("[\x00\ud800-\udfff]")


def _strings(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str, bool]]:
    """(path, string, whether it is a key) of every string in `value`."""
    if isinstance(value, str):
        yield path, value, False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield [*path, key], key, True
            yield from _strings(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, [*path, index])


def as_seen(value: str) -> str:
    """What the program sees: Kubernetes reads '$$' as '$'."""
    return value.replace("$$", "$")
