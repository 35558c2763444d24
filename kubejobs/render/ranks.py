"""What each rank of a multi-node or multi-process spec is told about the others.

Slurm's meaning is kept: `conditions.nodes` pods (an Indexed Job, one index per
node) of `conditions.processespernode` main containers (one per local rank).
Every main container gets the KUBEJOBS_* variables; a spec with more than one
rank (nodes > 1 or processes per node > 1) also gets the names torchrun and
torch.distributed's `env://` read, and a hostfile in MPI's `<host> slots=<n>` form.

One pod template serves every index, and Kubernetes cannot compute in env values:
the node rank reaches a container only as the completion-index fieldRef. So the
global RANK is given where it needs no arithmetic (one node: the local rank; one
process per node: the index) and left out otherwise, for the program (or its
init-cmd) to compute as NODE_RANK * LOCAL_WORLD_SIZE + LOCAL_RANK. It is never
guessed.

Host names are `<job>-<index>.<service>`: the pod's hostname and the headless
Service's subdomain, resolvable from any pod in the Job's namespace.
"""

from __future__ import annotations

from typing import Any

COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
#: MASTER_ADDR when every rank is in one pod: its containers share the network namespace.
LOCAL_HOST = "localhost"

HOSTFILE_ANNOTATION = "kubejobs.io/hostfile"
HOSTFILE_VOLUME = "kubejobs-hostfile"
HOSTFILE_DIR = "/var/run/kubejobs/hostfile"
HOSTFILE = f"{HOSTFILE_DIR}/hostfile"
HOSTFILE_ENV = "KUBEJOBS_HOSTFILE"


def host_names(job: str, nodes: int) -> list[str]:
    """Each node's host name, by node rank; empty for one node (no Service)."""
    return [f"{job}-{i}.{job}" for i in range(nodes)] if nodes > 1 else []


def distributed(nodes: int, processes_per_node: int) -> bool:
    """Whether a spec has more than one rank, and so gets the torch and MPI environment."""
    return nodes * processes_per_node > 1


def _index() -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}


def rank_env(
    nodes: int, processes_per_node: int, local_rank: int, hosts: list[str], master_port: int
) -> list[dict[str, Any]]:
    """The rank variables of the main container of `local_rank`, as Kubernetes EnvVars."""
    node_rank = _index() if nodes > 1 else {"value": "0"}
    world = str(nodes * processes_per_node)
    env: list[dict[str, Any]] = [
        {"name": "KUBEJOBS_NNODES", "value": str(nodes)},
        {"name": "KUBEJOBS_LOCAL_RANK", "value": str(local_rank)},
        {"name": "KUBEJOBS_LOCAL_WORLD_SIZE", "value": str(processes_per_node)},
        {"name": "KUBEJOBS_WORLD_SIZE", "value": world},
        {"name": "KUBEJOBS_NODE_RANK", **node_rank},
    ]
    if hosts:
        env.append({"name": "KUBEJOBS_HOSTS", "value": ",".join(hosts)})
    if not distributed(nodes, processes_per_node):
        return env
    if nodes == 1:
        rank: dict[str, Any] | None = {"value": str(local_rank)}
    elif processes_per_node == 1:
        rank = _index()
    else:
        rank = None  # node_rank * processes_per_node + local_rank: not expressible in a pod spec
    env += [
        {"name": "MASTER_ADDR", "value": hosts[0] if hosts else LOCAL_HOST},
        {"name": "MASTER_PORT", "value": str(master_port)},
        {"name": "WORLD_SIZE", "value": world},
        *([{"name": "RANK", **rank}] if rank is not None else []),
        {"name": "LOCAL_RANK", "value": str(local_rank)},
        {"name": "LOCAL_WORLD_SIZE", "value": str(processes_per_node)},
        {"name": "NODE_RANK", **node_rank},
        {"name": "GROUP_RANK", **node_rank},
    ]
    return env


def hostfile(hosts: list[str], processes_per_node: int) -> str:
    """The MPI/DeepSpeed hostfile: one `<host> slots=<processes per node>` line per node."""
    return "".join(f"{host} slots={processes_per_node}\n" for host in hosts or [LOCAL_HOST])


def hostfile_volume() -> dict[str, Any]:
    """The hostfile as a file, from the pod annotation through the downward API: no extra
    container or object, and it works as non-root with a read-only root filesystem."""
    return {
        "name": HOSTFILE_VOLUME,
        "downwardAPI": {
            "items": [
                {
                    "path": "hostfile",
                    "fieldRef": {"fieldPath": f"metadata.annotations['{HOSTFILE_ANNOTATION}']"},
                }
            ]
        },
    }


def hostfile_mount() -> dict[str, Any]:
    return {"name": HOSTFILE_VOLUME, "mountPath": HOSTFILE_DIR, "readOnly": True}
