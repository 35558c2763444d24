"""Strings that no server and no program can take, found before anything is applied.

Any other text is legal in a spec and reaches the program exactly: every plane
of Unicode, control characters, YAML-, Jinja- and shell-looking text. Two kinds
of string cannot exist past the spec file, so they are refused here with their
path, not by the API server or the container runtime at apply time:

- a NUL character: arguments and environment are C strings to execve (the
  runtime cannot start the program), as are the paths and names made of the
  spec's other text (the Colonies server stores a spec with one; it is the
  program that can never run);
- a lone UTF-16 surrogate (JSON's "\\ud83d" without its pair): it is not a
  Unicode character, so it has no UTF-8 form to send anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

Path = list[str | int]
# Python keeps a lone surrogate from a JSON escape as a code point of its own.
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problems(data: Any, add: Callable[[Path, str], None]) -> None:
    """Report every string (key or value) in `data` that cannot be passed on."""
    for path, text, is_key in _strings(data, []):
        problem = _problem(text)
        if problem:
            add(path, f"{'key' if is_key else 'value'} {problem}")


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str, bool]]:
    if isinstance(value, str):
        yield path, value, False
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield [*path, key], key, True
            yield from _strings(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, [*path, index])


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return (
            f"holds a NUL character at offset {text.index(chr(0))}: a program's arguments and "
            "environment, and the names and paths kubejobs makes of a spec, are C strings "
            "that end at a NUL"
        )
    found = _SURROGATE.search(text)
    if found:
        return (
            f"holds a lone UTF-16 surrogate \\u{ord(found.group()):04x} at offset "
            f"{found.start()}: it is not a Unicode character (write the character itself, "
            "or both halves of its surrogate pair)"
        )
    return None
