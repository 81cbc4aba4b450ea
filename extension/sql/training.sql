-- Training -----------------------------------------------------------------------------------
-- ml.train(...) submits a job to the bridge, ml.job(id) shows it. Spliced into sqlml--VERSION.sql
-- at @TRAINING_SQL@ by the Makefile; the bodies reuse the helper module through GD["sqlml"]:
-- _open (settings + kept-alive HTTP connection + token), check_query, check_model, BridgeError
-- and raise_sql.
--
-- Which rows train the model: ml.train sends the *database name* (current_database()) and the
-- query, never rows and never credentials. The bridge connects to that database itself with its
-- own role, from SQLML_TRAIN_PG_DSN (default 'host=127.0.0.1 port=5432 user=postgres'; in
-- production a read-only role, e.g. 'host=db port=5432 user=sqlml_reader password=...', granted
-- SELECT on the tables training may read) and reads the result as Arrow batches through a
-- server-side cursor in a read-only transaction. Because the bridge's role may see more than the
-- caller, ml.train first plans the query as the caller (SECURITY INVOKER, EXPLAIN checks table
-- privileges): a caller can only train on rows they could SELECT themselves.

-- SECURITY DEFINER: reads the bridge token. It only sends a spec that ml.train checked in this
-- session (ml.train leaves its canonical text in GD, which only PL/Python code can write), so
-- calling it directly cannot skip the caller's privilege check.
CREATE FUNCTION ml._submit_job(spec jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
import json
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
sqlml = GD["sqlml"]
payload = json.loads(spec)
canonical = json.dumps(payload, sort_keys=True)
checked = GD.setdefault("sqlml_checked_specs", set())
if canonical not in checked:
    plpy.error("ml._submit_job is internal", sqlstate="42501", hint="call ml.train(model, task, query, target, ...)")
checked.discard(canonical)
_settings, bridge = sqlml._open(plpy)
try:
    answer = bridge.call("POST", "/v1/jobs", payload)
except sqlml.BridgeError as error:
    sqlml.raise_sql(plpy, error)
    raise
return answer["id"]
$py$;
REVOKE ALL ON FUNCTION ml._submit_job(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION ml._submit_job(jsonb) IS 'sqlml internal: POST a job spec to the bridge (reads the bridge token); use ml.train';

-- SECURITY INVOKER on purpose: the query is checked with the caller's privileges.
CREATE FUNCTION ml.train(model text, task text, query text, target text, params jsonb DEFAULT '{}',
                         backend text DEFAULT 'local', promote text DEFAULT 'if_better')
RETURNS text
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS $py$
import json
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
sqlml = GD["sqlml"]
for name, value in (("model", model), ("task", task), ("query", query), ("target", target)):
    if value is None:
        plpy.error(f"{name} must not be NULL", sqlstate="22004",
                   hint="ml.train(model, task, query, target [, params, backend, promote])")
try:
    sqlml.check_model(model)
    body = sqlml.check_query(query)
except sqlml.BridgeError as error:
    sqlml.raise_sql(plpy, error)
    raise
# Plan (do not run) the query as the caller: a missing table or privilege fails here, in SQL terms.
plpy.execute("EXPLAIN SELECT * FROM (" + body + ") AS sqlml_training_rows")
options = json.loads(params) if params else {}
if not isinstance(options, dict):
    plpy.error("params must be a jsonb object", sqlstate="22023", hint="""e.g. '{"n_estimators": 200}'""")
spec = {
    "model": model,
    "task": task,
    "source": {"database": plpy.execute("SELECT current_database() AS db")[0]["db"], "query": body},
    "target": target,
    "params": options,
    "backend": backend or "local",
    "promote": promote or "if_better",
}
# A few spec fields may ride in params, so that one jsonb argument covers everything optional.
for key in ("features", "resources", "metric", "alias"):
    if key in options:
        spec[key] = options.pop(key)
GD.setdefault("sqlml_checked_specs", set()).add(json.dumps(spec, sort_keys=True))
plan = plpy.prepare("SELECT ml._submit_job($1::jsonb) AS id", ["text"])
return plpy.execute(plan, [json.dumps(spec)])[0]["id"]
$py$;
COMMENT ON FUNCTION ml.train(text, text, text, text, jsonb, text, text) IS 'Train a new version of a model from one SELECT on this database and return the job id (training runs in the background on the bridge; follow it with ml.job(id)). task: sentiment, lead_scoring (classification) or forecast; params: training parameters plus optional features, resources {"workers", "cpus_per_worker", "gpus"}, metric, alias; backend: local or ray; promote: never, always or if_better (the new version becomes production only when it beats it on the metric). The bridge reads the rows itself (SQLML_TRAIN_PG_DSN); the query is first checked with the caller''s privileges.';

CREATE FUNCTION ml.job(id text)
RETURNS TABLE(id text, model text, task text, backend text, state text, progress double precision,
              message text, version integer, promoted boolean, metrics jsonb, error text,
              created_at timestamptz, finished_at timestamptz)
LANGUAGE plpython3u VOLATILE STRICT PARALLEL RESTRICTED SECURITY DEFINER SET search_path = pg_catalog, pg_temp
ROWS 1
AS $py$
import json
import urllib.parse
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
sqlml = GD["sqlml"]
_settings, bridge = sqlml._open(plpy)
try:
    job = bridge.call("GET", "/v1/jobs/" + urllib.parse.quote(id, safe=""))
except sqlml.BridgeError as error:
    sqlml.raise_sql(plpy, error)
    raise
spec = job.get("spec") or {}
return [(
    job["id"], spec.get("model"), spec.get("task"), spec.get("backend"), job["state"], job.get("progress"),
    job.get("message"), job.get("version"), job.get("promoted"), json.dumps(job.get("metrics") or {}),
    job.get("error"), job.get("created_at"), job.get("finished_at"),
)]
$py$;
COMMENT ON FUNCTION ml.job(text) IS 'One training job: state (queued, running, succeeded, failed, cancelled), progress 0..1, message, the version it published, whether it was promoted, its metrics and error. Poll it after ml.train.';

GRANT EXECUTE ON FUNCTION ml.train(text, text, text, text, jsonb, text, text), ml.job(text) TO sqlml_admin;
GRANT EXECUTE ON FUNCTION ml._submit_job(jsonb) TO sqlml_admin;
