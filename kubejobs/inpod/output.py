"""The process output from the files the main containers wrote (render/process_io.py).

The log shipper reads them once every main container has ended and its log is
shipped, and sets them as the process output (Colonies `setoutputmsg`) before
the pod ends; the executor then closes the process without overriding it. It
says so in its own termination message, which the executor reads from the pod.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubejobs.process_io import OUTPUT_DIR, OUTPUT_MAX_BYTES, OUTPUT_SET


def collect(
    containers: Sequence[str], directory: Path = Path(OUTPUT_DIR)
) -> tuple[list[Any] | None, int, list[str]]:
    """(the output, or None when no container wrote a usable file; how many files made it;
    what was wrong with the others).

    A file holding a JSON list contributes its items, any other JSON value itself,
    in container order. A file that is too large or not JSON is left out and named.
    """
    output: list[Any] | None = None
    used = 0
    problems: list[str] = []
    for container in containers:
        path = directory / f"{container}.json"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size > OUTPUT_MAX_BYTES:
            problems.append(
                f"{path} is {size} bytes, over the {OUTPUT_MAX_BYTES}-byte limit: not used as "
                "output (put large results in CFS with fs.dirs)"
            )
            continue
        try:
            value = json.loads(path.read_bytes())
        except (ValueError, OSError) as err:
            problems.append(f"{path} is not JSON ({err}): not used as output")
            continue
        output = output or []
        output.extend(value if isinstance(value, list) else [value])
        used += 1
    return output, used, problems


def say_output_set(files: int, termination_log: Path = Path("/dev/termination-log")) -> None:
    # Outside a pod (tests, by hand) there is no termination log and no one to tell.
    with contextlib.suppress(OSError):
        termination_log.write_text(f"{OUTPUT_SET}{files} file(s)")
