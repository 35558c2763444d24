"""A process's input and output files: what the main containers are given and may write.

Input: the process's `in`, what the Colonies server assembled from its parents'
outputs when it was assigned (a JSON list, empty without parents). It reaches
the program

- always as a file, `/var/run/kubejobs/input/input.json`, through the
  downward API from a pod annotation (no extra object, no extra container);
- also as `KUBEJOBS_INPUT` (the same JSON) when it is at most 32 KiB: larger
  values make a pod spec heavy and approach the kernel's 128 KiB limit on one
  environment string.

It may be at most 200 KiB: Kubernetes allows 256 KiB of annotations per
object. Larger data goes through CFS (`fs`).

Output: each main container may write JSON to `KUBEJOBS_OUTPUT_FILE`
(`/var/run/kubejobs/output/<container>.json`, a volume shared with the log
shipper), up to 1 MiB; the shipper makes it the process output before the pod
ends (kubejobs/inpod/output.py). Termination messages stay the output when
no file is written.
"""

from __future__ import annotations

import json
from typing import Any

from kubejobs.errors import InvalidInput, Problem

INPUT_ANNOTATION = "kubejobs.io/input"
INPUT_VOLUME = "kubejobs-input"
INPUT_DIR = "/var/run/kubejobs/input"
INPUT_FILE = f"{INPUT_DIR}/input.json"
INPUT_MAX_BYTES = 200 * 1024
INPUT_ENV_MAX_BYTES = 32 * 1024
OUTPUT_VOLUME = "kubejobs-output"
OUTPUT_DIR = "/var/run/kubejobs/output"
OUTPUT_MAX_BYTES = 1024 * 1024
# The log shipper's termination message once it has set the output from the files: the
# executor then closes the process without termination messages, which would replace it.
OUTPUT_SET = "kubejobs: output set from "
# ... and when it gave up with output files it could not set: the executor then fails the
# process rather than close it with an output that is not the program's.
OUTPUT_LOST = "kubejobs: output not delivered: "


def output_file(container: str) -> str:
    return f"{OUTPUT_DIR}/{container}.json"


def input_json(process_id: str, inputs: list[Any] | None) -> str:
    """The input as the program reads it; InvalidInput (the process fails at once) when too large."""
    text = json.dumps(inputs or [], separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode())
    if size > INPUT_MAX_BYTES:
        raise InvalidInput(
            [
                Problem(
                    f"process:{process_id}",
                    "$.in",
                    f"the input from the parents' outputs is {size} bytes; kubejobs passes at "
                    f"most {INPUT_MAX_BYTES} (a pod annotation): pass larger data through CFS "
                    "(fs.dirs) and its label in the output instead",
                )
            ]
        )
    return text


# What main_env may add: removed again when an injected manifest is injected once more.
MAIN_ENV_NAMES = frozenset({"KUBEJOBS_INPUT_FILE", "KUBEJOBS_OUTPUT_FILE", "KUBEJOBS_INPUT"})


def main_env(container: str, text: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "KUBEJOBS_INPUT_FILE", "value": INPUT_FILE},
        {"name": "KUBEJOBS_OUTPUT_FILE", "value": output_file(container)},
    ]
    if len(text.encode()) <= INPUT_ENV_MAX_BYTES:
        env.append({"name": "KUBEJOBS_INPUT", "value": text.replace("$", "$$")})
    return env


def main_mounts() -> list[dict[str, Any]]:
    return [
        {"name": INPUT_VOLUME, "mountPath": INPUT_DIR, "readOnly": True},
        {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR},
    ]


def shipper_mount() -> dict[str, Any]:
    return {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR, "readOnly": True}


def volumes() -> list[dict[str, Any]]:
    return [
        {
            "name": INPUT_VOLUME,
            "downwardAPI": {
                "items": [
                    {
                        "path": "input.json",
                        "fieldRef": {"fieldPath": f"metadata.annotations['{INPUT_ANNOTATION}']"},
                    }
                ]
            },
        },
        # No sizeLimit: going over one evicts the pod; the shipper refuses a file over
        # OUTPUT_MAX_BYTES with a message instead. emptyDirs are world-writable, so the
        # program may run as any uid; the shipper only reads.
        {"name": OUTPUT_VOLUME, "emptyDir": {}},
    ]
