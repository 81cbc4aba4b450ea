#!/bin/sh
# Start Superset, then provision it: demo data and models (once), PostgreSQL tables, the DuckDB
# snapshot and the dashboards. The health check turns green only after provisioning finished.
set -eu
: "${SUPERSET_SECRET_KEY:?set SUPERSET_SECRET_KEY (a long random string)}"
: "${SQLML_SUPERSET_DB_PASSWORD:?set SQLML_SUPERSET_DB_PASSWORD (the password of Superset's PostgreSQL role)}"
mkdir -p "$SQLML_SUPERSET_HOME"
rm -f "$SQLML_SUPERSET_HOME/provisioned"

/opt/superset/bin/superset db upgrade
/opt/superset/bin/superset fab create-admin --username "${SQLML_SUPERSET_ADMIN:-admin}" \
    --password "${SQLML_SUPERSET_PASSWORD:-admin}" --firstname sqlml --lastname admin \
    --email admin@localhost || true  # already there after the first start
/opt/superset/bin/superset init

# The server gets no PostgreSQL administrator credentials: its connection is the role
# $SQLML_SUPERSET_DB_ROLE, which provisioning below puts into the database URI.
env -u PGUSER -u PGPASSWORD /opt/superset/bin/gunicorn --workers 2 --threads 8 --timeout 180 \
    --bind 0.0.0.0:8088 "superset.app:create_app()" &
server=$!
until python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/health', timeout=2)" 2>/dev/null; do
    sleep 2
done

# The demo database and models; the models land in the store the bridge replicas share.
test -f "$SQLML_HOME/demo.duckdb" || sqlml demo
sqlml superset provision --superset-url http://127.0.0.1:8088 --snapshot "$SQLML_HOME/superset.duckdb" \
    --bridge-url "${SQLML_BRIDGE_URL:-http://bridge:8765}" --pg-host postgres --pg-database sqlml_demo \
    --superset-role "${SQLML_SUPERSET_DB_ROLE:-sqlml_superset}"  # password: $SQLML_SUPERSET_DB_PASSWORD
touch "$SQLML_SUPERSET_HOME/provisioned"
wait "$server"
