"""Property: every spec of legal text is applied by the executor's own client and the API
server stores exactly what the spec says; a spec holding text no program can take is refused
by validation, with the path of that text, before anything is applied.

The examples are drawn from tests/legal_text.py with a fixed seed (derandomize), so a failure
is replayed by running the test again; hypothesis also prints the failing example.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from kubejobs.adapters.kube import KubeClient
from kubejobs.errors import InvalidInput
from kubejobs.executor.admission import Request
from kubejobs.executor.apply import Prepared, apply
from kubejobs.process_io import INPUT_ANNOTATION
from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec
from tests.legal_text import Drawn, as_seen, specs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RENDERER = Renderer(RenderSettings())


@pytest.fixture(scope="module")
def applier(kube: Any) -> Iterator[tuple[KubeClient, str]]:
    namespace = kube.create_namespace("text")
    try:
        yield KubeClient(kubeconfig=str(kube.kubeconfig)), namespace
    finally:
        kube.delete_namespace(namespace)


def expected_command(drawn: Drawn, pid: str) -> list[str]:
    words = [w.replace("{processid}", pid) for w in drawn.words + drawn.args]
    if not drawn.init:  # an empty init-cmd is no init-cmd
        return words
    init = drawn.init.replace("{processid}", pid)
    return ["/bin/sh", "-c", "{\n" + init + '\n} && exec "$@"', "kubejobs-init", *words]


def env_values(container: dict[str, Any]) -> dict[str, str]:
    """name -> value; the API server stores an empty value as none (the program sees "")."""
    return {e["name"]: e.get("value", "") for e in container.get("env", []) if "valueFrom" not in e}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(drawn=specs)
def test_what_the_api_server_stores_is_what_the_spec_says(
    applier: tuple[KubeClient, str], drawn: Drawn
) -> None:
    kube, namespace = applier
    pid = drawn.process_id()
    illegal = drawn.illegal_paths()
    try:
        spec = validate_spec(drawn.spec, "drawn.json")
    except InvalidInput as err:
        refused = {p.path for p in err.problems}
        assert illegal, f"a legal spec was refused: {err}"
        assert illegal <= refused, f"{illegal - refused} not named in: {err}"
        return
    assert not illegal, f"validation let through {illegal}"

    manifests = RENDERER.render(spec, pid, drawn.inputs)
    for manifest in manifests:
        if manifest["kind"] == "Job":
            manifest["spec"]["suspend"] = True  # stored, but no pod: this is about the API
    # the executor's path: the Job created (applied over when its name exists), the rest applied
    prepared = Prepared(pid, manifests[0]["metadata"]["name"], manifests, Request())
    assert apply(kube, prepared, namespace, threading.Event())

    job = kube.get("Job", namespace, manifests[0]["metadata"]["name"])
    assert job is not None
    pod = job["spec"]["template"]
    main = pod["spec"]["containers"][0]
    assert [as_seen(w) for w in main["command"] + main.get("args", [])] == expected_command(
        drawn, pid
    )
    env = env_values(main)
    for name, value in drawn.env.items():
        assert as_seen(env[name]) == value.replace("{processid}", pid)
    assert as_seen(env["COLONIES_COLONY_NAME"]) == drawn.colony
    assert json.loads(pod["metadata"]["annotations"][INPUT_ANNOTATION]) == drawn.inputs
    if "KUBEJOBS_INPUT" in env:
        assert json.loads(as_seen(env["KUBEJOBS_INPUT"])) == drawn.inputs
    # What was applied is what is stored, to the last character.
    assert main["command"] == manifests[0]["spec"]["template"]["spec"]["containers"][0]["command"]


def drawn_examples(count: int) -> list[Drawn]:
    """`count` examples of the generator, the same on every run."""
    found: list[Drawn] = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None)
    @given(drawn=specs)
    def collect(drawn: Drawn) -> None:
        found.append(drawn)

    collect()
    return found


def test_kubejobs_check_passes_legal_specs_and_names_the_illegal_text(
    kubeconform: Any, tmp_path: Path
) -> None:
    examples = drawn_examples(40)
    files = []
    for index, drawn in enumerate(examples):
        path = tmp_path / f"spec{index}.json"
        path.write_text(json.dumps(drawn.spec), encoding="ascii")  # lone surrogates as \\u escapes
        files.append((path, drawn))
    result = subprocess.run(
        [sys.executable, "-m", "kubejobs", "check", "--kubeconform", *(str(p) for p, _ in files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    illegal = [(p, d) for p, d in files if d.illegal_paths()]
    assert illegal and len(illegal) < len(files), "the generator must draw both kinds"
    assert result.returncode == 1, result.stdout + result.stderr
    for path, drawn in files:
        named = [line for line in result.stderr.splitlines() if line.startswith(f"{path}::")]
        paths = drawn.illegal_paths()
        if paths:
            for json_path in paths:
                assert any(line.startswith(f"{path}::{json_path}: ") for line in named), (
                    json_path,
                    named,
                )
        else:
            assert named == [], named
