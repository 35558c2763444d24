"""A PersistentVolume and its claim on real-node-0, prepared as a cluster operator would.

A statically provisioned `local` PV (a folder of the test's temp dir, with the
nodeAffinity a `local` PV must have) pre-bound to a claim in the test's
namespace: no provisioner, no StorageClass. The folder is made the way a fresh
disk comes: owned by root, mode 0755; what kubejobs needs to write there is its
business, not the test's. Kept out of testenv/node.py and the real-node
conftest on purpose (another branch changes those).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testenv.node import NODE_NAME
from tests.integration.polling import until


@dataclass(frozen=True)
class SharedVolume:
    claim: str
    pv: str
    path: Path
    """The PV's folder on the host: what every pod mounting the claim sees."""
    access_mode: str


def make_local_volume(
    kube: Any,
    namespace: str,
    folder: Path,
    access_mode: str = "ReadWriteOnce",
    claim: str = "kubejobs-shared",
) -> SharedVolume:
    """Create the folder, a `local` PV on real-node-0 over it and a claim bound to it."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 0, 0)
    folder.chmod(0o755)
    pv = f"{namespace}-{claim}"[:63]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": [access_mode],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "volumeMode": "Filesystem",
                "local": {"path": str(folder)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [NODE_NAME],
                                    }
                                ]
                            }
                        ]
                    }
                },
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": [access_mode],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
    kube.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )

    def bound() -> bool:
        found = kube.get_json(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        return bool(found.get("status", {}).get("phase") == "Bound")

    until(bound, f"claim {claim} bound to PV {pv}", 60)
    return SharedVolume(claim=claim, pv=pv, path=folder, access_mode=access_mode)


def delete_volume(kube: Any, volume: SharedVolume) -> None:
    """Best effort, as a clean-up: the PV is cluster-scoped and outlives the namespace."""
    with contextlib.suppress(Exception):
        kube.kubectl("delete", "pv", volume.pv, "--wait=false", "--ignore-not-found", check=False)
