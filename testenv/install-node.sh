#!/usr/bin/env bash
# What the real test node needs (testenv/node.py), installed when missing:
#
#   runc, containernetworking-plugins (loopback), umoci, busybox-static
#                     from Debian's packages (apt-get, only when one is missing)
#   containerd        v2 (containerd, containerd-shim-runc-v2, ctr) built from Go
#                     modules into .testenv/bin. Not Debian's containerd 1.6.20:
#                     its CRI log file lost the last ~5-15% of a fast writer's
#                     output (`seq 1 100000; echo last` in a pod: the file ended
#                     early in 6 of 8 runs; containerd 2.2.9: 8 of 8 whole).
#   the images        images/build.sh: pause, busybox and kubejobs as OCI
#                     archives in .testenv/images (rebuilt when their inputs change)
#
# The kubelet itself is the multi-call kube binary that testenv/install.sh
# builds. Idempotent: with everything in place it takes about a second.
# Called by testenv/install.sh (so `make setup` and `make test` run it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(runc containernetworking-plugins umoci busybox-static)
CONTAINERD_VERSION=v2.2.9     # github.com/containerd/containerd/v2
PREFIX="${KUBEJOBS_TESTENV_DIR:-$ROOT/.testenv}"
BIN="$PREFIX/bin"
STAMPS="$PREFIX/stamps"
LOGS="$PREFIX/logs"
GO="${GO:-go}"
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

build_containerd() {
  local want; want="containerd $CONTAINERD_VERSION $("$GO" env GOVERSION)"
  if [[ -x "$BIN/containerd" && -x "$BIN/containerd-shim-runc-v2" && -x "$BIN/ctr" \
        && -f "$STAMPS/containerd" && "$(cat "$STAMPS/containerd")" == "$want" ]]; then
    echo "[node] containerd $CONTAINERD_VERSION: up to date"; return 0
  fi
  local t0; t0=$(now)
  local tmp; tmp=$(mktemp -d "$PREFIX/gobin.XXXXXX")
  local mod=github.com/containerd/containerd/v2/cmd
  echo "[node] containerd $CONTAINERD_VERSION: building (log: $LOGS/build-containerd.log)"
  if ! CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}" GOBIN="$tmp" \
      "$GO" install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs no_aufs" \
      "$mod/containerd@$CONTAINERD_VERSION" "$mod/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
      "$mod/ctr@$CONTAINERD_VERSION" >"$LOGS/build-containerd.log" 2>&1; then
    cat "$LOGS/build-containerd.log" >&2; rm -rf "$tmp"
    echo "[node] containerd: BUILD FAILED" >&2; return 1
  fi
  mv -f "$tmp"/containerd "$tmp"/containerd-shim-runc-v2 "$tmp"/ctr "$BIN/"
  rm -rf "$tmp"
  echo "$want" >"$STAMPS/containerd"
  echo "[node] containerd $CONTAINERD_VERSION: built in $(( $(now) - t0 ))s"
}
mkdir -p "$BIN" "$STAMPS" "$LOGS"
build_containerd

"$ROOT/images/build.sh" all

echo "[node] real-node prerequisites ready after $(( $(now) - T0 ))s"
