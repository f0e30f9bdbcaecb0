#!/usr/bin/env bash
# Rewrites requirements/listener.lock: the closure of the listener's runtime
# dependencies (pyproject.toml with the modal and sentry extras, as pip resolves it),
# each pinned to the version installed in .venv, i.e. the one `make test` tests.
set -euo pipefail
cd "$(dirname "$0")/.."

report=$(mktemp)
trap 'rm -f "$report"' EXIT
.venv/bin/python -m pip install --quiet --dry-run --ignore-installed --report "$report" '.[modal,sentry]'
.venv/bin/python - "$report" <<'PY'
import importlib.metadata
import json
import sys
from pathlib import Path

resolved = json.loads(Path(sys.argv[1]).read_text())["install"]
names = sorted({item["metadata"]["name"] for item in resolved} - {"utter-backend"}, key=str.lower)
missing = []
pins = []
for name in names:
    try:
        pins.append(f"{name.lower()}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed in .venv (run scripts/bootstrap.sh): {', '.join(missing)}")
lock = Path("requirements/listener.lock")
header = [line for line in lock.read_text().splitlines() if line.startswith("#")]
lock.write_text("\n".join([*header, *pins]) + "\n")
print(f"requirements/listener.lock: {len(pins)} pins")
PY
