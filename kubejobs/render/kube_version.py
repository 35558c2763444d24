"""Target Kubernetes versions and the features that depend on them."""

from __future__ import annotations

import re

NATIVE_SIDECARS = (1, 29)  # KEP-753: beta and on by default from 1.29, GA in 1.33.
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?$")


def parse_kube_version(text: str) -> tuple[int, int]:
    """(major, minor) from '1.29', 'v1.29' or 'v1.29.3'."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes version (expected e.g. 1.29 or v1.34.2)")
    return int(match[1]), int(match[2])


def has_native_sidecars(version: str) -> bool:
    return parse_kube_version(version) >= NATIVE_SIDECARS
