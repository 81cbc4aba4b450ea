-- First start of the compose PostgreSQL: the database the dashboards read, with the extension, and
-- the least-privilege role Superset connects as. `sqlml superset provision` (run by the superset
-- service) loads the demo tables into it and grants the role SELECT on exactly those.
CREATE DATABASE sqlml_demo;
\connect sqlml_demo
CREATE EXTENSION plpython3u;
CREATE EXTENSION sqlml;
ALTER DATABASE sqlml_demo SET sqlml.bridge_url = 'http://bridge:8765';
ALTER DATABASE sqlml_demo SET sqlml.timeout_ms = '60000';

-- The role Superset connects as: a member of sqlml_user (EXECUTE on the ml.* scoring functions,
-- which read the bridge token internally), not a superuser, not a member of sqlml_admin, no CREATE
-- anywhere. Its password is SQLML_SUPERSET_DB_PASSWORD, which compose passes to this service and to
-- Superset and nothing else. The COMMENT marks it as provisioning's (dashboards/superset_role.py).
\getenv superset_password SQLML_SUPERSET_DB_PASSWORD
\if :{?superset_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'SQLML_SUPERSET_DB_PASSWORD is not set: the role Superset connects as needs a password'; END $$;
\endif
SELECT 'CREATE ROLE sqlml_superset' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sqlml_superset') \gexec
ALTER ROLE sqlml_superset LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'superset_password';
COMMENT ON ROLE sqlml_superset IS 'sqlml superset provisioning: the login Superset connects as (sqlml_user + SELECT on the demo tables)';
GRANT sqlml_user TO sqlml_superset;
GRANT CONNECT ON DATABASE sqlml_demo TO sqlml_superset;
