# PostgreSQL 15 with PL/Python and the sqlml extension installed (CREATE EXTENSION sqlml CASCADE).
# Build context: the repository root (docker-compose.yml sets it).
FROM postgres:15-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-plpython3-15 postgresql-server-dev-15 make gawk python3-minimal \
 && rm -rf /var/lib/apt/lists/*

# The helper's build reads the shared SQL rules from the Python package (sqlml/naming.py, sqlml/sql/).
COPY extension/ /usr/src/sqlml/extension/
COPY sqlml/ /usr/src/sqlml/sqlml/
RUN make -C /usr/src/sqlml/extension install \
 && apt-get purge -y postgresql-server-dev-15 make && apt-get autoremove -y

# Runs once, on an empty data directory: the dashboards' database with the extension in it.
COPY docker/postgres-init.sql /docker-entrypoint-initdb.d/10-sqlml.sql
