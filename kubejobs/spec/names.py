"""Name rules shared by the spec checks and rendering: env names, images, labels, ids."""

from __future__ import annotations

import re

# Portable env names: what POSIX shells, Slurm and every Kubernetes version accept.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Docker reference grammar (distribution/reference), simplified only by not
# validating the digest algorithm list.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)

LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
PROCESS_ID = re.compile(r"^[0-9a-f]{64}$")

# kubejobs sets these in every main container; a spec may not set them itself.
RESERVED_ENV = frozenset(
    {
        "COLONIES_PROCESS_ID",
        "COLONIES_COLONY_NAME",
        "KUBEJOBS_NODE_RANK",
        "KUBEJOBS_NNODES",
        "KUBEJOBS_HOSTS",
        "KUBEJOBS_LOCAL_RANK",
        "KUBEJOBS_LOCAL_WORLD_SIZE",
        "KUBEJOBS_WORLD_SIZE",
        "KUBEJOBS_HOSTFILE",
        "KUBEJOBS_INPUT",
        "KUBEJOBS_INPUT_FILE",
        "KUBEJOBS_OUTPUT_FILE",
    }
)
# ... and these (torchrun's and torch.distributed's names) when a spec has more than one
# rank (nodes x processespernode > 1). A single-process spec may still set them itself.
RANK_ENV = frozenset(
    {
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "NODE_RANK",
        "GROUP_RANK",
    }
)


def image_problem(image: str) -> str | None:
    if len(image) > 4096 or not IMAGE_REFERENCE.match(image):
        return f"{image!r} is not a valid image reference (expected [registry/]name[:tag][@digest], lowercase name)"
    return None
