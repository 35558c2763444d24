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
#   coredns           the cluster DNS of the real node's pod network, built from
#                     testenv/go/coredns (CoreDNS v1.13.2 with only the plugins a
#                     cluster zone needs: no forward, so no name resolves off
#                     this machine)
#   the images        images/build.sh: pause, busybox and kubejobs as OCI
#                     archives in .testenv/images (rebuilt when their inputs change)
#
# The kubelet itself is the multi-call kube binary that testenv/install.sh
# builds. Idempotent: with everything in place it takes about a second.
# Called by testenv/install.sh (so `make setup` and `make test` run it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(runc containernetworking-plugins umoci busybox-static)
COREDNS_VERSION=v1.13.2       # github.com/coredns/coredns (see testenv/go/coredns/go.mod)
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
build_coredns() {
  local dir="$ROOT/testenv/go/coredns"
  grep -q "github.com/coredns/coredns $COREDNS_VERSION\$" "$dir/go.mod" \
    || { echo "[node] testenv/go/coredns/go.mod does not pin CoreDNS $COREDNS_VERSION" >&2; return 1; }
  local want
  want="coredns $COREDNS_VERSION $("$GO" env GOVERSION) $(cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go | sha256sum | cut -c1-16)"
  if [[ -x "$BIN/coredns" && -f "$STAMPS/coredns" && "$(cat "$STAMPS/coredns")" == "$want" ]]; then
    echo "[node] coredns $COREDNS_VERSION: up to date"; return 0
  fi
  local t0; t0=$(now)
  echo "[node] coredns $COREDNS_VERSION: building (log: $LOGS/build-coredns.log)"
  if ! (cd "$dir" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}" \
        "$GO" build -trimpath -ldflags "-s -w" -o "$BIN/coredns.new" .) >"$LOGS/build-coredns.log" 2>&1; then
    cat "$LOGS/build-coredns.log" >&2
    echo "[node] coredns: BUILD FAILED" >&2; return 1
  fi
  # the promise of the module: no plugin that could send a query off this machine
  if "$BIN/coredns.new" -plugins | grep -qw forward; then
    echo "[node] coredns: the build has the forward plugin" >&2; return 1
  fi
  mv -f "$BIN/coredns.new" "$BIN/coredns"
  echo "$want" >"$STAMPS/coredns"
  echo "[node] coredns $COREDNS_VERSION: built in $(( $(now) - t0 ))s"
}

mkdir -p "$BIN" "$STAMPS" "$LOGS"
build_containerd
build_coredns

"$ROOT/images/build.sh" all

echo "[node] real-node prerequisites ready after $(( $(now) - T0 ))s"
