"""Real servers for kubejobs' integration tests, started on loopback.

Setup (once per machine, idempotent, seconds when already built)::

    testenv/install.sh        # builds into .testenv/bin from Go modules

Pieces (each usable on its own; tests use the fixtures in
tests/integration/conftest.py; ``python -m testenv up`` starts all of them):

- :class:`testenv.kube.KubeCluster`: etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler and kwok with fake nodes; see its docstring for the pod
  annotations that steer pod outcomes.
- :class:`testenv.colonies.ColoniesServer`: the real Colonies v1.9.7 server on a
  PostgreSQL 15 cluster of its own (testenv/postgres.py), with a colony and an
  approved executor; its binary is also the real ``colonies`` CLI.
- :class:`testenv.s3.S3Server`: moto's S3 server.
- :func:`kubeconform_schema_location`, :func:`helm_path`, :func:`kubeconform_path`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from testenv._proc import BIN, PREFIX, ROOT, TestEnvError, binary, free_port

__all__ = [
    "BIN",
    "KUBECONFORM_VERSIONS",
    "PREFIX",
    "ROOT",
    "TestEnvError",
    "binary",
    "free_port",
    "helm_path",
    "kubeconform_path",
    "kubeconform_schema_location",
    "kubeconform_schema_root",
]

#: Kubernetes versions with offline kubeconform schemas prepared by default:
#: the oldest with native sidecars (1.29) and the control plane's release.
KUBECONFORM_VERSIONS = ("1.29.0", "1.34.0")

_REF = re.compile(r'"\$ref":\s*"/api/_definitions\.json#')


def helm_path() -> str:
    return binary("helm")


def kubeconform_path() -> str:
    return binary("kubeconform")


def kubeconform_schema_root() -> Path:
    return PREFIX / "share" / "kubeconform-schemas"


def _prepare_version(src_root: Path, dest_root: Path, version: str, stamp: str) -> None:
    for strict in (False, True):
        src = src_root / f"v{version}-local{'-strict' if strict else ''}"
        dest = dest_root / f"v{version}-standalone{'-strict' if strict else ''}"
        if not src.is_dir():
            raise TestEnvError(f"kubernetes-validate has no schemas for {version} ({src})")
        stamp_file = dest / ".stamp"
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.json"):
            # kubernetes-validate's schemas carry "$id": "https://kubernetes.io/api/..."
            # and refer to "/api/_definitions.json#...", which kubeconform would
            # fetch over the network. Drop the top-level $id (so the file's own
            # path is the base) and make the refs relative to the sibling
            # _definitions.json.
            doc = json.loads(_REF.sub('"$ref": "_definitions.json#', f.read_text()))
            if isinstance(doc, dict):
                doc.pop("$id", None)
            (dest / f.name).write_text(json.dumps(doc))
        stamp_file.write_text(stamp)


def kubeconform_schema_location(versions: tuple[str, ...] = KUBECONFORM_VERSIONS) -> str:
    """The ``-schema-location`` template for offline kubeconform runs.

    Schemas come from the PyPI package kubernetes-validate (strict and
    non-strict, Kubernetes 1.25..1.37, only X.Y.0), copied once into
    ``.testenv/share/kubeconform-schemas/v<X.Y.0>-standalone[-strict]/`` with
    their ``$ref``s made relative. Use with ``-kubernetes-version X.Y.0``
    (patch 0) and optionally ``-strict``::

        kubeconform -schema-location "$(python -c 'import testenv; print(testenv.kubeconform_schema_location())')" \\
            -kubernetes-version 1.34.0 -strict job.yaml
    """
    import kubernetes_validate

    pkg = Path(kubernetes_validate.__file__).parent
    src_root = pkg / "kubernetes-json-schema"
    try:
        from importlib.metadata import version as dist_version

        stamp = json.dumps(
            {"kubernetes-validate": dist_version("kubernetes-validate"), "layout": 2}
        )
    except Exception:  # pragma: no cover - metadata missing
        stamp = str(src_root.stat().st_mtime)
    dest_root = kubeconform_schema_root()
    for v in versions:
        _prepare_version(src_root, dest_root, v, stamp)
    return (
        str(dest_root)
        + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
