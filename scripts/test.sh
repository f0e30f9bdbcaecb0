#!/usr/bin/env bash
# The one test command (`make test`): static checks, every pgTAP file, every pytest
# suite, each against a fresh database cloned from the migrated template.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
PY=.venv/bin/python

echo "== static checks"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -40; exit 1; }
.venv/bin/mypy
# What only runs elsewhere, checked offline: workflows, their security, the Dockerfile.
.venv/bin/actionlint .github/workflows/*.yml
.venv/bin/zizmor --offline --quiet .github/workflows
.venv/bin/hadolint Dockerfile

echo "== database"
$PY -m devstack start
TEST_DB=$($PY -m devstack testdb-create | tail -n 1)
cleanup() { $PY -m devstack testdb-drop "$TEST_DB" || true; }
trap cleanup EXIT
DATABASE_URL="$TEST_DB" $PY -m devstack lint

echo "== pgTAP (supabase/tests)"
PGOPTIONS='-c client_min_messages=warning' pg_prove --ext .sql --dbname "$TEST_DB" --timer supabase/tests/*.sql

echo "== pgTAP where pg_cron keeps its jobs (supabase/tests/cron, the target's own database)"
$PY -m devstack migrate >/dev/null
PGOPTIONS='-c client_min_messages=warning' pg_prove --ext .sql --dbname "$($PY -m devstack url)" supabase/tests/cron/*.sql

echo "== migrations and pgTAP on PostgreSQL 17"
bash scripts/test-postgres17.sh

echo "== pytest (tests)"
set +e
$PY -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$status"
