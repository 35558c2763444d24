# One image for the executor and the in-pod programs (data stager, log shipper).
# Build: docker build -t kubejobs:0.1.0 .
# Without Docker: `make image` (images/build.sh) builds the same image with umoci.
#
# Kept in step with `make image` by construction: the root file system of both
# is made by images/kubejobs/rootfs.sh (Debian bookworm's Python 3.11 and the
# libraries in images/kubejobs/packages.txt, unpacked; the project's wheel with
# its `executor` extra; byte code compiled; user 65532). This file only runs
# that script and copies its result into an empty image; the user, working
# directory, environment and entry point below are the ones images/build.sh
# passes to `umoci config` (change both together).
#
# Runs as uid/gid 65532 (non-root) with a read-only root file system; `kubejobs`
# is the entry point: `kubejobs executor ...`, `kubejobs stage-in`, `kubejobs ship-logs`.

FROM debian:bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kubejobs ./kubejobs
COPY schema ./schema
COPY templates ./templates
COPY sidecars ./sidecars
COPY images/kubejobs ./images/kubejobs
RUN PIP_BREAK_SYSTEM_PACKAGES=1 images/kubejobs/rootfs.sh /rootfs /src

FROM scratch
COPY --from=build /rootfs /
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/kubejobs
USER 65532:65532
WORKDIR /var/lib/kubejobs
ENTRYPOINT ["kubejobs"]
CMD ["--help"]
