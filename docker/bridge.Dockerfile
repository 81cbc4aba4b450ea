# The sqlml image: the bridge (`sqlml serve`) and the CLI. The superset and ray images build on it.
# Build context: the repository root.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    SQLML_HOME=/var/lib/sqlml SQLML_STORE=/models SQLML_DASHBOARDS_DIR=/opt/sqlml-src/dashboards
RUN python -m venv /opt/sqlml && /opt/sqlml/bin/pip install --upgrade pip
ENV PATH=/opt/sqlml/bin:$PATH
# torch first, pinned like the Makefile does, so nothing pulls another build. PyPI's wheel carries
# CUDA; pass TORCH_INDEX_URL (a CPU-only wheel index) for a much smaller bridge image.
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
WORKDIR /opt/sqlml-src
COPY pyproject.toml README.md ./
COPY sqlml/ sqlml/
COPY bridge/ bridge/
COPY udfs/ udfs/
COPY dashboards/ dashboards/
RUN pip install ".[ray]"  # the bridge is the Ray driver for training jobs

EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2)"
CMD ["sqlml", "serve", "--host", "0.0.0.0", "--port", "8765", "--store", "/models"]
