#!/bin/sh
# Grafana's read-only role on the hub's database (docs/dashboards.md), idempotent.
# PGHOST, PGUSER and PGDATABASE come from the environment; the passwords from secret files.
set -eu
PGPASSWORD="$(cat "${DB_PASSWORD_FILE:-/run/secrets/db_password}")"
export PGPASSWORD
reader_password="$(cat "${READER_PASSWORD_FILE:-/run/secrets/grafana_db_password}")"
psql -v ON_ERROR_STOP=1 -v reader_password="$reader_password" \
    -v reader_sql="${READER_SQL:-/grafana/grafana-reader.sql}" <<'SQL'
SELECT 'CREATE ROLE iochub_grafana LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iochub_grafana') \gexec
ALTER ROLE iochub_grafana LOGIN PASSWORD :'reader_password';
ALTER ROLE iochub_grafana SET default_transaction_read_only = on;
ALTER ROLE iochub_grafana SET statement_timeout = '30s';
\i :reader_sql
SQL
