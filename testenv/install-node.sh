#!/usr/bin/env bash
# What the real test node needs (testenv/node.py), installed when missing:
#
#   containerd, runc, containernetworking-plugins (loopback), umoci,
#   busybox-static   from Debian's packages (apt-get, only when one is missing)
#   the images        images/build.sh: pause, busybox and kubejobs as OCI
#                     archives in .testenv/images (rebuilt when their inputs change)
#
# The kubelet itself is the multi-call kube binary that testenv/install.sh
# builds. Idempotent: with everything in place it takes about a second.
# Called by testenv/install.sh (so `make setup` and `make test` run it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(containerd runc containernetworking-plugins umoci busybox-static)
now() { date +%s; }
T0=$(now)

if [[ $(id -u) -ne 0 ]]; then
  echo "[node] install-node.sh: the real node (containerd, kubelet) needs root" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[node] apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # the package lists may be missing or stale on a fresh machine
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
fi
# Debian's containerd package may start a system containerd where an init
# system runs; the test node runs its own (own socket and root), so leave it.

"$ROOT/images/build.sh" all

echo "[node] real-node prerequisites ready after $(( $(now) - T0 ))s"
