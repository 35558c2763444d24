#!/usr/bin/env bash
# Build the images the real test node runs, without Docker or a registry:
# root file systems packed with umoci into OCI layouts, each tarred into an
# archive that `ctr images import` loads (testenv/node.py does that).
#
#   images/build.sh [kubejobs|busybox|pause|all]   (default: all)
#
# Archives go to $KUBEJOBS_TESTENV_DIR/images (.testenv/images), one per image:
#   kubejobs.tar  localhost/kubejobs:<version>  the executor and in-pod programs
#                 (images/kubejobs/rootfs.sh; the Dockerfile runs the same script)
#   busybox.tar   localhost/busybox:1           busybox-static, for test programs
#   pause.tar     localhost/pause:1             the pod sandbox (sleeps forever)
# An image is rebuilt only when its inputs changed (a stamp of their hashes).
# Needs root, umoci, busybox-static, apt-get/dpkg-deb (testenv/install-node.sh
# installs them) and the project's .venv Python for pip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${KUBEJOBS_TESTENV_DIR:-$ROOT/.testenv}"
OUT="$PREFIX/images"
WORK="$PREFIX/image-build"
STAMPS="$PREFIX/stamps"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x "$PYTHON" ]] || PYTHON=python3
VERSION=$("$PYTHON" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")
FORCE=${FORCE:-0}

mkdir -p "$OUT" "$WORK" "$STAMPS"
# One build at a time per prefix (test sessions started together share it).
exec 9>"$OUT/.build.lock"
flock 9
now() { date +%s; }

# pack NAME TAG ROOTFS [umoci config flags...]: OUT/NAME.tar with the image NAME:TAG.
pack() {
  local name=$1 tag=$2 rootfs=$3; shift 3
  local layout="$WORK/$name-layout"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci insert --image "$layout:$tag" "$rootfs" /
  umoci config --image "$layout:$tag" --os linux --architecture amd64 \
    --author kubejobs --config.workingdir / "$@"
  umoci gc --layout "$layout"
  tar -C "$layout" -cf "$OUT/$name.tar.new" .
  mv -f "$OUT/$name.tar.new" "$OUT/$name.tar"
  rm -rf "$layout"
}

inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

up_to_date() {  # NAME STAMP
  [[ $FORCE -eq 0 && -f "$OUT/$1.tar" && -f "$STAMPS/image-$1" && "$(cat "$STAMPS/image-$1")" == "$2" ]]
}

busybox_rootfs() {
  local r="$WORK/busybox-rootfs"
  rm -rf "$r"; mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,run}
  cp /bin/busybox "$r/bin/busybox"
  chroot "$r" /bin/busybox --install -s /bin
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  echo "$r"
}

build_small() {  # busybox and pause from the same busybox-static root file system
  local want; want="busybox $(sha256sum /bin/busybox | cut -c1-16) $(inputs_hash "$0")"
  if up_to_date busybox "$want" && up_to_date pause "$want"; then
    echo "[image] busybox, pause: up to date"; return 0
  fi
  local t0; t0=$(now)
  local r; r=$(busybox_rootfs)
  pack busybox 1 "$r" --config.cmd /bin/sh
  pack pause 1 "$r" --config.entrypoint /bin/sleep --config.cmd 2147483647
  rm -rf "$r"
  echo "$want" >"$STAMPS/image-busybox"; echo "$want" >"$STAMPS/image-pause"
  echo "[image] busybox, pause: built in $(( $(now) - t0 ))s"
}

build_kubejobs() {
  local want
  want="kubejobs $VERSION $(cd "$ROOT" && find pyproject.toml kubejobs schema templates sidecars images/kubejobs images/build.sh \
        -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if up_to_date kubejobs "$want"; then
    echo "[image] kubejobs $VERSION: up to date ($OUT/kubejobs.tar)"; return 0
  fi
  local t0; t0=$(now)
  local r="$WORK/kubejobs-rootfs"
  KUBEJOBS_IMAGE_CACHE="$PREFIX/cache/image" PYTHON="$PYTHON" \
    "$ROOT/images/kubejobs/rootfs.sh" "$r" "$ROOT"
  local t1; t1=$(now)
  # Same settings as the Dockerfile's final stage.
  pack kubejobs "$VERSION" "$r" \
    --config.user 65532:65532 \
    --config.workingdir /var/lib/kubejobs \
    --config.entrypoint kubejobs --config.cmd --help \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.env HOME=/var/lib/kubejobs
  local size; size=$(du -sm "$r" | cut -f1)
  rm -rf "$r"
  echo "$want" >"$STAMPS/image-kubejobs"
  echo "[image] kubejobs $VERSION: built in $(( $(now) - t0 ))s (root fs $(( t1 - t0 ))s, pack $(( $(now) - t1 ))s);" \
       "unpacked ${size} MB, archive $(du -m "$OUT/kubejobs.tar" | cut -f1) MB"
}

case "${1:-all}" in
  kubejobs) build_kubejobs ;;
  busybox|pause) build_small ;;
  all) build_small; build_kubejobs ;;
  *) echo "build.sh: unknown image $1" >&2; exit 2 ;;
esac
