-- Training -----------------------------------------------------------------------------------
-- ml.train(...) submits a job to the bridge, ml.job(id) shows it. Spliced into sqlml--VERSION.sql
-- at @TRAINING_SQL@ by the Makefile; the bodies call the helper module through GD["sqlml"].
--
-- Which rows train the model: exactly those the caller can SELECT. ml.train is SECURITY INVOKER
-- and reads the training query through a cursor with the caller's privileges (whatever functions
-- the query calls run as the caller too), then streams the rows to the bridge as an upload
-- (POST /v1/uploads). The bridge never connects to this database. The SECURITY DEFINER steps
-- below read the bridge token and no data: ml._train_upload* send what they are given, and
-- ml._submit_job only sends uploads that this session's ml.train filled, with the lineage it recorded.

CREATE FUNCTION ml._train_upload(columns text) RETURNS text
LANGUAGE plpython3u VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
return GD["sqlml"].upload_start(plpy, columns)
$py$;
COMMENT ON FUNCTION ml._train_upload(text) IS 'sqlml internal: open an upload of training rows on the bridge (reads the bridge token); use ml.train';

CREATE FUNCTION ml._train_upload_rows(upload_id text, rows text) RETURNS bigint
LANGUAGE plpython3u VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
return GD["sqlml"].upload_rows(plpy, upload_id, rows)
$py$;
COMMENT ON FUNCTION ml._train_upload_rows(text, text) IS 'sqlml internal: append training rows to an upload (reads the bridge token); use ml.train';

CREATE FUNCTION ml._submit_job(spec jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $py$
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
return GD["sqlml"].submit_job(plpy, spec)
$py$;
COMMENT ON FUNCTION ml._submit_job(jsonb) IS 'sqlml internal: POST a job spec whose rows were uploaded by ml.train (reads the bridge token); use ml.train';

-- SECURITY INVOKER on purpose: the query runs with the caller's privileges. Every name it adds to
-- the caller's query is schema-qualified, so the caller's search_path cannot redirect it.
CREATE FUNCTION ml.train(model text, task text, query text, target text, params jsonb DEFAULT '{}',
                         backend text DEFAULT 'local', promote text DEFAULT 'if_better')
RETURNS text
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE SECURITY INVOKER
AS $py$
if "sqlml" not in GD:
    plpy.execute("SELECT ml._load_helper()")
return GD["sqlml"].train(plpy, model, task, query, target, params, backend, promote)
$py$;
COMMENT ON FUNCTION ml.train(text, text, text, text, jsonb, text, text) IS 'Train a new version of a model from one SELECT and return the job id (training runs in the background on the bridge; follow it with ml.job(id)). task: sentiment, lead_scoring (classification) or forecast; params: training parameters plus optional features, resources {"workers", "cpus_per_worker", "gpus"}, metric, alias; backend: local or ray; promote: never, always or if_better (the new version becomes production only when it beats it on the metric). The query runs here with the caller''s privileges and its rows are streamed to the bridge.';

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

GRANT EXECUTE ON FUNCTION ml.train(text, text, text, text, jsonb, text, text), ml.job(text),
    ml._train_upload(text), ml._train_upload_rows(text, text), ml._submit_job(jsonb) TO sqlml_admin;
