# The selector: stateless parent selection. Build from the repository root:
#   docker build -f deploy/docker/selector.Dockerfile -t ghcr.io/asiarch/selector:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py README.md ./
COPY protos/gen protos/gen
COPY services services
COPY kernels kernels
# The selector extra adds nothing to the shared runtime (grpcio, pydantic, structlog).
RUN /opt/venv/bin/pip install --no-cache-dir ".[selector]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 asiarch \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin asiarch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ASIARCH_HOST=0.0.0.0 ASIARCH_PORT=50051 ASIARCH_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "exec asiarch health 127.0.0.1:${ASIARCH_PORT}"]
ENTRYPOINT ["asiarch", "serve", "selector"]
