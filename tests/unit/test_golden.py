"""Each example renders to its golden manifest (tests/golden/). Changes show up as reviewed diffs.

Regenerate after an intended change: KUBEJOBS_UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.output import to_yaml
from kubejobs.spec import load_documents, validate_spec
from kubejobs.spec.validate import validate_document

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".json", ".yaml"))
GOLDEN = ROOT / "tests" / "golden"
PID = "5f1e0c3a9b7d4e2f8a6c1b3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f"
# Settings as a realistic deployment would set them, so the golden files show them in place.
SETTINGS = RenderSettings(
    namespace="batch",
    colony_name="research",
    executor_name="kubejobs-1",
    colonies_host="colonies.colonies.svc",
    colonies_port=50080,
)
VARIANTS = {
    "": SETTINGS,
    "-k8s-1.28": RenderSettings(**{**SETTINGS.__dict__, "kube_version": "1.28"}),
    "-restricted": RenderSettings(**{**SETTINGS.__dict__, "restricted_pods": True}),
}
# Which examples each variant renders (every example renders with the plain settings).
VARIANT_EXAMPLES = {"-k8s-1.28": ("hello-world", "cfs-data"), "-restricted": ("cfs-data",)}


def render_example(path: Path, settings: RenderSettings) -> str:
    (doc,), problems = load_documents([str(path)])
    assert not problems and not validate_document(doc)
    specs = [data for _, data in doc.specs()]
    renderer = Renderer(settings)
    manifests = []
    for index, data in enumerate(specs):
        pid = PID[:-1] + str(index)
        manifests += renderer.render(validate_spec(data, str(path)), pid)
    return to_yaml(manifests)


CASES = [
    (p, suffix)
    for p in EXAMPLES
    for suffix in VARIANTS
    if not suffix or p.stem in VARIANT_EXAMPLES[suffix]
]


@pytest.mark.parametrize(("example", "suffix"), CASES, ids=[p.stem + s for p, s in CASES])
def test_example_matches_golden(example: Path, suffix: str) -> None:
    golden = GOLDEN / f"{example.stem}{suffix}.yaml"
    rendered = render_example(example, VARIANTS[suffix])
    if os.environ.get("KUBEJOBS_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with KUBEJOBS_UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(encoding="utf-8")


def test_every_golden_file_has_an_example() -> None:
    expected = {f"{p.stem}{s}.yaml" for p, s in CASES}
    assert {p.name for p in GOLDEN.glob("*.yaml")} == expected
