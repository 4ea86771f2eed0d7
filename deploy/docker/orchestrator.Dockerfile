# The orchestrator: `asiarch discover` against deployed services (a compose service, a
# Kubernetes Job), and the results commands. Build from the repository root:
#   docker build -f deploy/docker/orchestrator.Dockerfile -t ghcr.io/asiarch/orchestrator:0.1.0 .
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
# The loop, progress display and report only: no torch.
RUN python requirements.py pyproject.toml orchestrator > requirements.txt \
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
    && mkdir -p /var/lib/asiarch/runs && chown -R 10001:10001 /var/lib/asiarch
# The dependencies, then asiarch on top: a code change rebuilds only the last two layers.
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /var/lib/asiarch
USER 10001:10001
# Services come from ASIARCH_{SELECTOR,RESEARCHER,ENGINEER,ANALYST}_ADDRESS. --resume makes a
# restarted container continue the same run rather than refuse its directory.
ENTRYPOINT ["asiarch"]
CMD ["discover", "--resume", "--run-dir", "/var/lib/asiarch/runs/default"]
