#!/bin/sh
# Random secrets for deploy/compose, one file each under ./secrets; existing files are kept.
# The folder is private to its owner (700); the files inside are readable (644) because
# Compose bind-mounts each one as it is, and the containers run as their own users.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets
new() { [ -s "secrets/$1" ] || { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "secrets/$1"; }; }
for name in db_password hub_secret_key mqtt_admin_password mqtt_hub_password \
    metrics_scrape_token grafana_admin_password grafana_db_password; do
    new "$name"
done
[ -s secrets/hub_database_url ] ||
    printf 'postgresql://iochub:%s@timescaledb:5432/iochub' "$(cat secrets/db_password)" \
        > secrets/hub_database_url
chmod 644 secrets/*
echo "secrets in $(pwd)/secrets; keep a copy of hub_secret_key apart from the backups"
