-- First start of the compose PostgreSQL: the database the dashboards read, with the extension.
-- `sqlml superset provision` (run by the superset service) loads the demo tables into it.
CREATE DATABASE sqlml_demo;
\connect sqlml_demo
CREATE EXTENSION sqlml CASCADE;
ALTER DATABASE sqlml_demo SET sqlml.bridge_url = 'http://bridge:8765';
ALTER DATABASE sqlml_demo SET sqlml.timeout_ms = '60000';
