#!/usr/bin/env bash
# Assemble the kubejobs image's root file system in a directory.
#
#   images/kubejobs/rootfs.sh ROOTFS [SRC]
#
# The one recipe for the image's contents: `make image` (images/build.sh, no
# Docker) and the Dockerfile's build stage both run this script, so the two
# cannot drift apart; the Dockerfile only copies ROOTFS into an empty image
# and sets the same user, entry point and environment as images/build.sh.
#
# Contents: the Debian bookworm packages in packages.txt unpacked with
# dpkg-deb -x (Python 3.11 and the libraries its standard library needs; no
# shell, package manager or perl), the project's wheel with its `executor`
# extra installed into /usr/lib/python3/dist-packages, byte code compiled by
# the image's own interpreter (the root file system is read-only at run
# time), a `kubejobs` entry point, and a home /var/lib/kubejobs owned by the
# non-root user 65532.
#
# Needs: apt-get (Debian bookworm sources), dpkg-deb, chroot (run as root),
# and a Python 3.11 with pip ($PYTHON, default python3) to install wheels.
# KUBEJOBS_IMAGE_CACHE keeps downloaded .debs between runs.
set -euo pipefail

ROOTFS=${1:?usage: rootfs.sh ROOTFS [SRC]}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "${2:-$HERE/../..}" && pwd)"
PYTHON=${PYTHON:-python3}
CACHE=${KUBEJOBS_IMAGE_CACHE:-$ROOTFS.cache}
UID_GID=65532

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "rootfs.sh: $PYTHON must be Python 3.11 (the image's interpreter)" >&2; exit 1; }

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS" "$CACHE/debs"

# ---- Debian packages ---------------------------------------------------------
mapfile -t PKGS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt")
missing=()
for p in "${PKGS[@]}"; do
  compgen -G "$CACHE/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  (cd "$CACHE/debs" && apt-get -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
fi
for p in "${PKGS[@]}"; do
  # newest cached version of the package
  deb=$(ls -1 "$CACHE/debs/${p}"_*.deb | sort -V | tail -n1)
  dpkg-deb -x "$deb" "$ROOTFS"
done

# Debian's usrmerge layout: /lib, /lib64, /bin are links into /usr.
for d in bin lib lib64 sbin; do
  if [[ -d "$ROOTFS/$d" && ! -L "$ROOTFS/$d" ]]; then
    mkdir -p "$ROOTFS/usr/$d"
    cp -a "$ROOTFS/$d/." "$ROOTFS/usr/$d/"
    rm -rf "${ROOTFS:?}/$d"
  fi
  [[ -e "$ROOTFS/usr/$d" ]] && ln -sfn "usr/$d" "$ROOTFS/$d"
done
ln -sfn python3.11 "$ROOTFS/usr/bin/python3"

# What no program in the image reads: documentation, man pages, translations,
# and the parts of the standard library for tests, GUIs and building packages.
rm -rf "$ROOTFS"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion} \
  "$ROOTFS"/usr/lib/python3.11/{test,idlelib,tkinter,turtledemo,lib2to3,ensurepip} \
  "$ROOTFS"/usr/lib/python3.11/turtle.py \
  "$ROOTFS"/usr/lib/python3.11/distutils/command/*.exe

# ---- users, home, temp -------------------------------------------------------
mkdir -p "$ROOTFS"/{etc,tmp,var/lib/kubejobs,proc,sys,dev,run}
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nkubejobs:x:%d:%d:kubejobs:/var/lib/kubejobs:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
  "$UID_GID" "$UID_GID" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nkubejobs:x:%d:\nnogroup:x:65534:\n' "$UID_GID" >"$ROOTFS/etc/group"
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
chown "$UID_GID:$UID_GID" "$ROOTFS/var/lib/kubejobs"

# ---- the project -------------------------------------------------------------
SITE="$ROOTFS/usr/lib/python3/dist-packages"
mkdir -p "$SITE"
# A copy of the source: pip builds the wheel from it without touching the checkout.
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
cp -a "$SRC"/{pyproject.toml,README.md,kubejobs,schema,templates,sidecars} "$BUILD/"
find "$BUILD" -name __pycache__ -prune -exec rm -rf {} +
# --target installs every dependency afresh, whatever $PYTHON has installed; what
# that Python's own packages conflict with is not the image's concern, so unwarned.
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip install --quiet --no-compile \
  --no-warn-conflicts --root-user-action=ignore --target "$SITE" "$BUILD[executor]"
rm -rf "$SITE/bin"
# botocore carries the API models of every AWS service (about 100 MB); the
# image talks to S3 only.
if [[ -d "$SITE/botocore/data" ]]; then
  find "$SITE/botocore/data" -mindepth 1 -maxdepth 1 -type d \
    ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +
fi
# The kubernetes client's asyncio copy (kubernetes.aio, about 70 MB with its
# aiohttp stack): kubejobs uses the synchronous client only.
rm -rf "$SITE"/kubernetes/aio "$SITE"/{aiohttp,aiohttp_retry,aiohappyeyeballs,aiosignal,frozenlist,multidict,yarl,propcache} \
  "$SITE"/prometheus_client/aiohttp
# kubernetes-validate's non-strict schemas: `kubejobs check` reads the strict ones.
find "$SITE/kubernetes_validate/kubernetes-json-schema" -mindepth 1 -maxdepth 1 -type d \
  -name 'v*-local' -exec rm -rf {} +
if [[ -d "$SITE/boto3/data" ]]; then
  find "$SITE/boto3/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 -exec rm -rf {} +
fi
find "$SITE" -depth -type d \( -name tests -o -name __pycache__ \) -path '*/dist-packages/*/*' \
  -exec rm -rf {} +

cat >"$ROOTFS/usr/bin/kubejobs" <<'EOF'
#!/usr/bin/python3.11 -s
import sys

from kubejobs.cli import main

sys.exit(main())
EOF
cat >"$ROOTFS/usr/bin/kubejobs-inpod" <<'EOF'
#!/usr/bin/python3.11 -s
from kubejobs.inpod.entry import main

main()
EOF
chmod 0755 "$ROOTFS/usr/bin/kubejobs" "$ROOTFS/usr/bin/kubejobs-inpod"

# Byte code, by the image's own interpreter (the root file system is read-only
# when it runs, so nothing could be cached later).
chroot "$ROOTFS" /usr/bin/python3.11 -m compileall -q \
  /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null
# The entry point works (imports every module the executor and the in-pod
# programs load).
chroot --userspec="$UID_GID:$UID_GID" "$ROOTFS" /usr/bin/kubejobs --help >/dev/null
chroot --userspec="$UID_GID:$UID_GID" "$ROOTFS" /usr/bin/kubejobs-inpod --help >/dev/null
chroot --userspec="$UID_GID:$UID_GID" "$ROOTFS" /usr/bin/python3.11 -c \
  'import kubejobs.executor.loop, kubejobs.inpod.shipper, kubejobs.inpod.stager, kubejobs.check, kubernetes.client, boto3; boto3.client("s3", region_name="us-east-1")'
