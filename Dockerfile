# syntax=docker/dockerfile:1
# The iochub container image: the hub, its CLI and espeak-ng (text-to-speech).
#   docker build -t iochub .
#   docker run --env-file .env iochub serve
# Settings come from the environment (IOCHUB_*) or from secret files; none is baked in.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# --- console: the browser libraries the hub serves itself (as `make vendor`) ------------
FROM ${NODE_IMAGE} AS console
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
    && mkdir -p vendor/leaflet \
    && cp node_modules/hls.js/dist/hls.min.js vendor/ \
    && cp -r node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css \
        node_modules/leaflet/dist/images vendor/leaflet/ \
    && cp node_modules/leaflet.markercluster/dist/leaflet.markercluster.js \
        node_modules/leaflet.markercluster/dist/MarkerCluster.css \
        node_modules/leaflet.markercluster/dist/MarkerCluster.Default.css vendor/leaflet/

# --- build: a virtualenv with the hub and its pinned dependencies ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers stay in this stage: a dependency without a wheel for this platform builds here.
# Debian packages follow the base image's release (bookworm) rather than exact revisions,
# which its security updates replace.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/iochub
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY hub ./hub
COPY drivers ./drivers
COPY firmware_meta ./firmware_meta
COPY dashboards ./dashboards
COPY --from=console /src/vendor ./hub/web/static/vendor
# As in the Makefile: grafana-client needs niquests, whose urllib3-future would otherwise
# replace urllib3 for every library; built from source it installs side by side.
RUN /opt/iochub/bin/pip install --upgrade pip==26.3 \
    && URLLIB3_NO_OVERRIDE=1 /opt/iochub/bin/pip install --no-binary urllib3-future \
        -c constraints.txt .

# --- run: the virtualenv on a slim Python, no compilers, a dedicated user -------------
FROM ${PYTHON_IMAGE} AS run
LABEL org.opencontainers.image.title="iochub" \
      org.opencontainers.image.description="Device hub for district Intelligent Operations Centers" \
      org.opencontainers.image.licenses="Apache-2.0"
# espeak-ng: Vietnamese text-to-speech for announcements; ffmpeg: cameras' live views.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 iochub \
    && useradd --system --uid 10001 --gid iochub --home-dir /var/lib/iochub \
        --shell /usr/sbin/nologin iochub \
    && install -d -o iochub -g iochub -m 750 /var/lib/iochub
COPY --from=build /opt/iochub /opt/iochub
ENV PATH=/opt/iochub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IOCHUB_DATA_DIR=/var/lib/iochub \
    IOCHUB_HTTP__HOST=0.0.0.0 \
    IOCHUB_HTTP__PORT=8080 \
    IOCHUB_LOG_FORMAT=json
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/iochub
# Uploaded audio, generated keys: keep on a volume.
VOLUME ["/var/lib/iochub"]
EXPOSE 8080 5683/udp
# /readyz: database reachable, schema current, broker reachable (503 otherwise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('IOCHUB_HTTP__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["iochub"]
CMD ["serve"]
