# The listener as a container (docs/deploy.md, "Listener hosts"): the same pinned
# dependencies as `make test` (requirements/listener.lock), run from source as in the
# systemd unit. Build: docker build -t utter-listener .
# Run: docker run --env-file listener.env --stop-timeout 90 -p 9464:9464 utter-listener
FROM python:3.11.14-slim-bookworm

# ffmpeg normalises uploaded references (gpu/reference.py). Debian stable's security
# updates are wanted, so its version is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app utter

WORKDIR /app
COPY requirements/listener.lock requirements/listener.lock
RUN pip install --no-cache-dir --requirement requirements/listener.lock
COPY devstack devstack
COPY gpu gpu
COPY listener listener

USER 10001
ENV PYTHONUNBUFFERED=1 \
    UTTER_METRICS_HOST=0.0.0.0 \
    UTTER_METRICS_PORT=9464 \
    UTTER_SHUTDOWN_GRACE_SECONDS=30 \
    UTTER_STORAGE=supabase
EXPOSE 9464
# SIGTERM drains: running jobs get the grace period, the rest go back to the queue;
# give `docker stop` / Kubernetes 90 s (see deploy/utter-listener.service).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"]
ENTRYPOINT ["python", "-m", "listener"]
