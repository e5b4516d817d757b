#!/bin/sh
# Runs once, on the first start of an empty database volume (docker-entrypoint-initdb.d of the postgres /
# timescale images). Creates `grafana_reader`: it can SELECT every table that `shopfloor db migrate` creates
# later (default privileges) and nothing else. Skipped when SHOPFLOOR_GRAFANA_DB_PASSWORD is empty.
set -eu
if [ -z "${SHOPFLOOR_GRAFANA_DB_PASSWORD:-}" ]; then
    echo "50-grafana-reader: SHOPFLOOR_GRAFANA_DB_PASSWORD is empty, no grafana_reader role created"
    exit 0
fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$SHOPFLOOR_GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'pw';
ALTER ROLE grafana_reader SET statement_timeout = '30s';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"DBNAME" TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
