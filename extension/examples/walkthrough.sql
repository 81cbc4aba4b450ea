-- sqlml in psql: from CREATE EXTENSION to scored leads.
-- Run:  psql -v ON_ERROR_STOP=1 -v bridge_url=http://127.0.0.1:8765 -f extension/examples/walkthrough.sql
-- (the bridge serves a lead_score model with inputs mostype, maothers, mgemleef, ppersaut and a
-- sentiment model; the demo bridge's lead_score has all 85 Caravan columns instead).
\set QUIET on
\pset footer off
CREATE EXTENSION IF NOT EXISTS sqlml CASCADE;
SET sqlml.bridge_url = :'bridge_url';   -- or ALTER DATABASE ... SET, per role, per session
SET sqlml.timeout_ms = 5000;
\set QUIET off

\echo '== 1. which models does the bridge serve?'
SELECT name, version, task, runtime FROM ml.models() ORDER BY name;

\echo '== 2. typed functions from the model signatures'
SELECT model, function, action FROM ml.sync() ORDER BY model;

\echo '== 3. a sentiment per row'
SELECT review, (ml.sentiment(review)).label
FROM (VALUES ('great coffee, would buy again'), ('stale and bitter')) AS r(review);

\echo '== 4. some leads'
CREATE TEMP TABLE walkthrough_leads AS
SELECT g AS id, (g % 10)::bigint AS mostype, (g % 3)::bigint AS maothers,
       (g % 5)::bigint AS mgemleef, (g % 7)::bigint AS ppersaut
FROM generate_series(1, 1000) g;

\echo '== 5. score one lead with the typed function'
SELECT id, round(ml.lead_score(mostype, maothers, mgemleef, ppersaut)::numeric, 4) AS probability
FROM walkthrough_leads WHERE id = 7;

\echo '== 6. score all leads in batches, top 5'
SELECT l.id, round((s.result->>'probability')::numeric, 4) AS probability
FROM ml.predict_query('lead_score',
                      'SELECT id, mostype, maothers, mgemleef, ppersaut FROM walkthrough_leads', 'id') AS s
JOIN walkthrough_leads l ON l.id = s.key::int
ORDER BY probability DESC, l.id
LIMIT 5;

\echo '== 7. why did lead 7 score so?'
SELECT feature, value, round(contribution::numeric, 4) AS contribution
FROM ml.explain('lead_score', (SELECT to_jsonb(l) - 'id' FROM walkthrough_leads l WHERE id = 7), 2);

\echo '== 8. how many leads are worth a call?'
SELECT count(*) FILTER (WHERE (result->>'probability')::float8 > 0.5) AS hot_leads, count(*) AS scored
FROM ml.predict_batch('lead_score', ARRAY(SELECT to_jsonb(l) - 'id' FROM walkthrough_leads l ORDER BY id));
