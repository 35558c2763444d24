"""`kubejobs-inpod stage-in|ship-logs`: the entry point of the injected containers.

It installs the SIGTERM handler before anything else is imported (see
sigterm.py), then loads only the in-pod commands: not the renderer, Jinja or
jsonschema that `kubejobs` loads for its other commands, which would only
delay the data stager, and with it the program.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from kubejobs.inpod import sigterm

TERMINATION_LOG = Path("/dev/termination-log")


def main() -> None:
    sigterm.install()
    from kubejobs.errors import KubejobsError
    from kubejobs.inpod.command import inpod

    try:
        inpod.main(prog_name="kubejobs-inpod")  # click's own usage errors and exit codes
    except KubejobsError as err:
        print(f"error: {err}", file=sys.stderr)
        # The termination message is what the executor reads from the pod: the process's
        # errors (or, for a native sidecar, the executor's note) then say what went wrong.
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(f"error: {err}"[:4000])
        sys.exit(1)
