# Superset 6.1 with the sqlml dashboards. Built on the sqlml image (compose passes it as the
# `sqlml` build context), so the SQL mutator can call the project's own `sqlml sql rewrite`, and
# `sqlml superset provision` can write the DuckDB snapshot Superset reads.
FROM sqlml

# Superset's own venv: its pins (SQLAlchemy 1.4, DuckDB 1.x, an older sqlglot) conflict with sqlml's.
COPY dashboards/requirements-superset.txt /opt/superset-requirements.txt
RUN python -m venv /opt/superset \
 && /opt/superset/bin/pip install --upgrade pip \
 && /opt/superset/bin/pip install -r /opt/superset-requirements.txt
COPY dashboards/superset_config.py /etc/superset/superset_config.py
COPY docker/superset-entrypoint.sh /usr/local/bin/superset-entrypoint.sh

ENV SUPERSET_CONFIG_PATH=/etc/superset/superset_config.py \
    SQLML_SUPERSET_HOME=/var/lib/superset \
    SQLML_REWRITE_COMMAND="/opt/sqlml/bin/sqlml sql rewrite --dialect postgres" \
    FLASK_APP=superset
EXPOSE 8088
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/health', timeout=3)" \
        && test -f /var/lib/superset/provisioned
ENTRYPOINT ["/usr/local/bin/superset-entrypoint.sh"]
