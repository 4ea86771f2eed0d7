# The engineer on NVIDIA GPUs (Triton kernels). Needs the NVIDIA container toolkit on the
# host (`gpus: all` in compose, nvidia.com/gpu on Kubernetes). Build from the repository root:
#   docker build -f deploy/docker/engineer-cuda.Dockerfile -t ghcr.io/asiarch/engineer-cuda:0.1.0 .
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
# torch from PyPI is the CUDA build and brings the CUDA runtime as nvidia-* wheels,
# so no CUDA base image is needed: the host's driver is mounted by the toolkit. The lock
# pins torch and triton (the version that build requires); torch pins its nvidia-* wheels.
RUN python requirements.py pyproject.toml engineer > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock -r requirements.txt

# The code, built into a wheel; the final stage installs it over the dependencies.
FROM deps AS build
COPY setup.py README.md ./
COPY protos/gen protos/gen
COPY services services
COPY kernels kernels
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# Triton compiles a small C launcher per kernel signature at first use: it needs a C compiler.
# Versions are Debian bookworm's; pinning them would break the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 asiarch \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin asiarch
# The dependencies, then asiarch on top: a code change rebuilds only the last two layers.
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl
# No address-space limit on sandboxes (SANDBOX_MEMORY_GB=0): the CUDA driver reserves far
# more virtual memory than it uses; the container's memory limit bounds them instead.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ASIARCH_HOST=0.0.0.0 ASIARCH_PORT=50053 ASIARCH_LOG_FORMAT=json \
    ASIARCH_ENGINEER_DEFAULT_DEVICE=cuda ASIARCH_ENGINEER_DEFAULT_BUDGET=gpu \
    ASIARCH_ENGINEER_SANDBOX_MEMORY_GB=0 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50053
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec asiarch health 127.0.0.1:${ASIARCH_PORT}"]
ENTRYPOINT ["asiarch", "serve", "engineer"]
