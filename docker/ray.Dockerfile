# Ray for sqlml training jobs: the head and the GPU workers run this image (`ray start ...`).
# Built on the sqlml image so workers import the same training code the bridge submits.
FROM sqlml

RUN pip install "ray[train]==2.60.0"  # already in the sqlml image; kept explicit for the workers
# GPU workers need a CUDA build of torch: reinstall PyPI's wheel in case the sqlml image was built
# with a CPU-only index.
RUN pip install --force-reinstall --no-deps torch==2.13.0
ENV RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
EXPOSE 6379 8265 10001
# The head checks its own GCS; workers override this with the head's address (docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=5 CMD ray health-check --address 127.0.0.1:6379
CMD ["ray", "start", "--head", "--port=6379", "--dashboard-host=0.0.0.0", "--ray-client-server-port=10001", "--block"]
