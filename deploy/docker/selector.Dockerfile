# The selector: stateless parent selection. Build from the repository root:
#   docker build -f deploy/docker/selector.Dockerfile -t ghcr.io/asiarch/selector:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every pip install reads the lock as constraints: the versions `make test` passed with.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock pip
COPY pyproject.toml deploy/docker/requirements.py ./
# The dependencies get a layer of their own, rebuilt only when pyproject.toml or the lock changes.
# The selector extra adds nothing to the shared runtime (grpcio, pydantic, structlog).
RUN python requirements.py pyproject.toml selector > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock -r requirements.txt

# The code, built into a wheel; the final stage installs it over the dependencies.
FROM deps AS build
COPY setup.py README.md ./
COPY protos/gen protos/gen
COPY services services
COPY kernels kernels
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 asiarch \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin asiarch
# The dependencies, then asiarch on top: a code change rebuilds only the last two layers.
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ASIARCH_HOST=0.0.0.0 ASIARCH_PORT=50051 ASIARCH_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "exec asiarch health 127.0.0.1:${ASIARCH_PORT}"]
ENTRYPOINT ["asiarch", "serve", "selector"]
