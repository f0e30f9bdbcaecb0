#!/usr/bin/env bash
# Runs on a listener host (docs/deploy.md), from the checkout at /opt/utter after
# scripts/deploy.sh checked out the commit: installs the listener's dependencies from
# the lockfile (the listener runs from the checkout), restarts the service (SIGTERM: running jobs finish within the grace
# period, the rest go back to the queue) and waits until /healthz answers.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${UTTER_METRICS_PORT:-9464}
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --requirement requirements/listener.lock
sudo systemctl restart utter-listener

for _ in $(seq 1 60); do
  if curl --silent --fail --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null; then
    echo "update-listener: $(hostname) is healthy at $(git rev-parse --short HEAD)"
    exit 0
  fi
  sleep 2
done
echo "update-listener: $(hostname) did not become healthy within 120 s; journalctl -u utter-listener" >&2
exit 1
