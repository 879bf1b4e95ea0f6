#!/bin/sh
# Lets Grafana's read-only role log in. Migration 0016 creates the role iochub_grafana
# (NOLOGIN) with its grants; this gives it LOGIN and the password Grafana's datasource uses,
# and keeps it read-only. Idempotent. PGHOST, PGUSER and PGDATABASE come from the
# environment, the passwords from secret files.
set -eu
PGPASSWORD="$(cat "${DB_PASSWORD_FILE:-/run/secrets/db_password}")"
export PGPASSWORD
reader_password="$(cat "${READER_PASSWORD_FILE:-/run/secrets/grafana_db_password}")"
psql -v ON_ERROR_STOP=1 -v reader_password="$reader_password" <<'SQL'
ALTER ROLE iochub_grafana LOGIN PASSWORD :'reader_password';
ALTER ROLE iochub_grafana SET default_transaction_read_only = on;
ALTER ROLE iochub_grafana SET statement_timeout = '30s';
SQL
