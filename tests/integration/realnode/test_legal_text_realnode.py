"""The nastiest legal text end to end on the real node, and what a program cannot reach.

A workflow submitted with the real `colonies` CLI: the parent gets the strings of
tests/legal_text.py's END_TO_END as arguments and in an environment variable, prints them
(the log), and writes them as its output (the output file); the child receives them as its
input (a pod annotation read through the downward API) and passes them on. Every string
must arrive exactly at every step. The nodenames carry an emoji too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testenv.colonies import ColoniesServer
from tests.integration.realnode.conftest import job_spec
from tests.integration.realnode.test_executor_realnode import WAIT
from tests.integration.realnode.test_workflows_realnode import (
    process_ids,
    submit_workflow,
    wait_workflow,
)
from tests.integration.test_colonies_cli import process_json
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun
from tests.integration.test_inpod_stager import put_file
from tests.legal_text import END_TO_END

pytestmark = pytest.mark.integration

# Each argument on a line of its own, then the same from the environment (without a final
# newline), a line with a NUL the program printed, and the arguments as the output.
PARENT = (
    'for a in "$@"; do printf "%s\\n" "$a"; done; '
    'printf "%s\\n" "$NASTY"; '
    "printf 'nul\\000byte\\n'; "
    'printf "%s" "$NASTY_JSON" >"$KUBEJOBS_OUTPUT_FILE"; '
    'printf "%s" "$LAST"'
)
# The input file and variable as log lines, and the file as the output.
CHILD = (
    'cat "$KUBEJOBS_INPUT_FILE"; echo; printf "%s\\n" "$KUBEJOBS_INPUT"; '
    'cp "$KUBEJOBS_INPUT_FILE" "$KUBEJOBS_OUTPUT_FILE"'
)


def log_messages(colonies: ColoniesServer, pid: str) -> list[str]:
    """The process log as lines, split only at '\\n' (LS, PS and NEL are text here)."""
    return colonies.log_text(pid).split("\n")


def test_every_legal_string_reaches_the_program_the_log_the_output_and_the_child(
    real_executor: Callable[..., ExecutorRun], colonies: ColoniesServer, tmp_path: Path
) -> None:
    run = real_executor()
    nasty = "\n".join(END_TO_END)
    parent = job_spec(
        run.type,
        "sh",
        ["-c", PARENT, "sh", *END_TO_END],
        nodename="parent \U0001f680",
        env={
            "NASTY": nasty,
            "NASTY_JSON": json.dumps(END_TO_END, ensure_ascii=False),
            "LAST": "no final newline \U0010fffd",
        },
    )
    child = job_spec(run.type, "sh", ["-c", CHILD], nodename="child \U00020000")
    child["conditions"]["dependencies"] = ["parent \U0001f680"]
    graph = wait_workflow(run, colonies, submit_workflow(colonies, tmp_path, [parent, child]))
    ids = process_ids(graph)
    assert sorted(ids) == ["child \U00020000", "parent \U0001f680"]
    first, second = (process_json(colonies, ids[n]) for n in sorted(ids, reverse=True))
    assert (first["state"], second["state"]) == (SUCCESS, SUCCESS), (
        first.get("errors"),
        second.get("errors"),
        run.log(),
    )

    # the program got every argument and the variable exactly; every line reached the log
    printed = [
        *nasty.split("\n"),
        *nasty.split("\n"),
        "nul\ufffdbyte",
        "no final newline \U0010fffd",
    ]
    assert log_messages(colonies, first["processid"])[: len(printed)] == printed
    # the output file, the child's input, and the child's own output
    assert first["out"] == END_TO_END
    assert second["in"] == END_TO_END
    assert second["out"] == END_TO_END
    lines = log_messages(colonies, second["processid"])
    assert json.loads(lines[0]) == END_TO_END  # the file
    assert json.loads(lines[1]) == END_TO_END  # KUBEJOBS_INPUT
    # what a user reads with the CLI
    shown = colonies.cli("log", "get", "-p", first["processid"], "--count", "500").stdout
    assert "rocket \U0001f680 ok" in shown
    run.wait_no_jobs()


def test_a_program_cannot_reach_the_executor_key_the_s3_credentials_or_a_token(
    real_executor: Callable[..., ExecutorRun], colonies: ColoniesServer, s3: Any
) -> None:
    """The key and S3 credentials are in the injected containers' environment and the token
    in the shipper's mounts; the program's container has none of them, and no other
    container's processes to read them from."""
    run = real_executor()
    label = f"/secrets/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, label, "in.txt", b"staged\n")
    secrets = {"executor key": run.prvkey, **{k: v for k, v in s3.config.env.items() if "KEY" in k}}
    assert len(secrets) >= 3, sorted(secrets)  # the key, the access key and the secret key
    # The program looks for each secret's first 16 characters in every file it can read
    # (not /proc, where its own arguments are) and dumps its environment and mounts.
    needles = {name: value[:16] for name, value in secrets.items()}
    script = (
        "env; echo ---; cat /proc/self/mounts; echo ---; "
        "ls /var/run/secrets 2>&1; cat /proc/[0-9]*/cmdline | tr '\\000' ' '; echo; echo ---; "
        'for n in "$@"; do '
        "grep -rlsF -e \"$n\" $(ls -d /* | grep -v -e '^/proc$' -e '^/sys$' -e '^/dev$') "
        '&& echo "found $n" || echo "absent $n"; done'
    )
    fs = {"mount": "/cfs", "dirs": [{"label": label, "dir": "/data"}]}
    # a control: the staged file's text, which the search must find
    spec = job_spec(run.type, "sh", ["-c", script, "sh", "staged", *needles.values()], fs=fs)
    pid = run.submit(spec)
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    env, mounts, listing, search = colonies.log_text(pid).split("---\n")
    for name, value in secrets.items():
        assert value not in env + mounts, f"the {name} is visible to the program"
    assert "AWS_" not in env and "COLONIES_PRVKEY" not in env, env
    assert "serviceaccount" not in mounts and "kubejobs-token" not in mounts, mounts
    assert "No such file or directory" in listing, listing  # no /var/run/secrets at all
    # its own processes only: the injected containers' are in other PID namespaces
    assert "sh -c env;" in listing and "kubejobs" not in listing, listing
    assert search.split("\n")[: len(needles) + 2] == [
        "/cfs/data/in.txt",
        "found staged",
        *(f"absent {n}" for n in needles.values()),
    ]
    # and the staged file was there for it: the stager did use the S3 credentials
    assert "/cfs" in mounts
    run.wait_no_jobs()
