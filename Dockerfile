# One image for the executor and the in-pod programs (data stager, log shipper).
# Build: docker build -t kubejobs:0.1.0 .
# Runs as uid/gid 65532 (non-root) with a read-only root file system; `kubejobs`
# is the entry point: `kubejobs executor ...`, `kubejobs stage-in`, `kubejobs ship-logs`.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY kubejobs ./kubejobs
COPY schema ./schema
COPY templates ./templates
COPY sidecars ./sidecars
RUN pip wheel --wheel-dir /wheels ".[executor]"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/var/lib/kubejobs
COPY --from=build /wheels /wheels
# Byte code is compiled here: at run time the root file system is read-only.
RUN pip install --no-index --find-links /wheels "kubejobs[executor]" \
    && rm -rf /wheels \
    && python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && mkdir -p /var/lib/kubejobs && chown 65532:65532 /var/lib/kubejobs
USER 65532:65532
WORKDIR /var/lib/kubejobs
ENTRYPOINT ["kubejobs"]
CMD ["--help"]
