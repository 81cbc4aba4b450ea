-- sqlml in psql: from CREATE EXTENSION to scored leads, on the demo's tables and models.
-- Run:  psql -v ON_ERROR_STOP=1 -v bridge_url=http://127.0.0.1:8765 -f extension/examples/walkthrough.sql
-- in a database `sqlml demo --postgres DSN` loaded (tables reviews, leads, power), against a bridge
-- that serves the demo's models: sentiment, lead_score (the 85 Caravan columns) and household_power.
-- A bridge that needs a token: `sqlml demo --postgres DSN --token T` stored it (ml.set_token).
\set QUIET on
\pset footer off
CREATE EXTENSION IF NOT EXISTS sqlml CASCADE;
SET sqlml.bridge_url = :'bridge_url';   -- or ALTER DATABASE ... SET, per role, per session
SET sqlml.timeout_ms = 60000;           -- a cold bridge loads each model on its first call
\set QUIET off

\echo '== 1. which models does the bridge serve?'
SELECT name, version, task, runtime FROM ml.models() ORDER BY name;

\echo '== 2. typed functions from the model signatures'
SELECT model, split_part(function, '(', 1) AS function, action FROM ml.sync() ORDER BY model;

\echo '== 3. a sentiment per row'
SELECT review, (ml.sentiment(review)).label
FROM (VALUES ('great coffee, would buy again'), ('stale and bitter')) AS r(review);

\echo '== 4. does the model agree with the stars? (50 held-out reviews; great = 5 stars)'
SELECT great, (ml.sentiment(body)).label, count(*) AS reviews
FROM reviews WHERE split = 'test' AND review_id % 20 = 0
GROUP BY 1, 2 ORDER BY 1, 2;

\echo '== 5. score one lead with the typed function: the row form reads its 85 feature columns'
SELECT lead_id, round(ml.lead_score(l)::numeric, 4) AS probability,
       ml.predict('lead_score', l) AS as_json             -- the same through the generic function
FROM leads l WHERE lead_id = 7;

\echo '== 6. score all leads in batches, top 5'
SELECT key::bigint AS lead_id, round((result->>'probability')::numeric, 4) AS probability
FROM ml.predict_query('lead_score', 'SELECT * FROM leads', 'lead_id')
ORDER BY probability DESC, lead_id
LIMIT 5;

\echo '== 7. why did lead 7 score so?'
SELECT feature, value, round(contribution::numeric, 4) AS contribution
FROM ml.explain('lead_score', (SELECT to_jsonb(l) - 'lead_id' - 'purchased' FROM leads l WHERE lead_id = 7), 3);

\echo '== 8. how many leads are worth a call, and how many of those bought?'
SELECT count(*) FILTER (WHERE s.p > 0.2) AS hot_leads,
       count(*) FILTER (WHERE s.p > 0.2 AND l.purchased) AS hot_and_bought,
       count(*) AS scored
FROM (SELECT key::bigint AS lead_id, (result->>'probability')::float8 AS p
      FROM ml.predict_query('lead_score', 'SELECT * FROM leads', 'lead_id')) AS s
JOIN leads l USING (lead_id);

\echo '== 9. the next 24 hours of household power, with an 80 % band'
SELECT ts,
       round(max(value) FILTER (WHERE quantile = 'p10')::numeric, 3) AS p10,
       round(max(value) FILTER (WHERE quantile = 'p50')::numeric, 3) AS p50,
       round(max(value) FILTER (WHERE quantile = 'p90')::numeric, 3) AS p90
FROM ml.forecast('household_power', 'global_active_power', 24)
GROUP BY ts
ORDER BY ts;
