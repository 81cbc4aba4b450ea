-- A pure-SQL stand-in for the sqlml extension's scoring functions, for tests that need a real
-- engine but not the bridge: same names, signatures, NULL behaviour and batch contract (one row
-- per array element, ord = 1-based position), with deterministic "models" and a call counter.
CREATE SCHEMA ml;
CREATE SEQUENCE ml.per_row_calls;
CREATE SEQUENCE ml.batch_calls;
CREATE TYPE ml.sentiment_result AS (label text, confidence double precision, score_positive double precision,
                                    score_negative double precision, score_neutral double precision,
                                    score_mixed double precision);

CREATE FUNCTION ml._label(t text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN t IS NULL THEN NULL WHEN length(t) % 3 = 0 THEN 'positive'
                  WHEN length(t) % 3 = 1 THEN 'negative' ELSE 'neutral' END $$;
CREATE FUNCTION ml._confidence(t text) RETURNS double precision LANGUAGE sql IMMUTABLE
AS $$ SELECT (length(t) % 7) / 7.0 + 0.1 $$;
CREATE FUNCTION ml._score(f jsonb) RETURNS double precision LANGUAGE sql IMMUTABLE
AS $$ SELECT ((SELECT coalesce(sum(CASE jsonb_typeof(v) WHEN 'number' THEN (v #>> '{}')::numeric
                                                      WHEN 'string' THEN length(v #>> '{}') ELSE 0 END), 0)
                FROM jsonb_each(f) AS e(k, v)) % 97) / 97.0 $$;

CREATE FUNCTION ml.sentiment(text text) RETURNS ml.sentiment_result
LANGUAGE plpgsql VOLATILE STRICT AS $$
BEGIN
    PERFORM nextval('ml.per_row_calls');
    RETURN ROW(ml._label(text), ml._confidence(text), ml._confidence(text), 1 - ml._confidence(text), 0, 0)
        ::ml.sentiment_result;
END $$;

CREATE FUNCTION ml.sentiment_batch(texts text[])
RETURNS TABLE(ord integer, label text, confidence double precision, score_positive double precision,
              score_negative double precision, score_neutral double precision, score_mixed double precision)
LANGUAGE plpgsql VOLATILE STRICT ROWS 1000 AS $$
BEGIN
    PERFORM nextval('ml.batch_calls');
    RETURN QUERY SELECT u.n::integer, ml._label(u.t),
                        CASE WHEN u.t IS NULL THEN NULL ELSE ml._confidence(u.t) END,
                        CASE WHEN u.t IS NULL THEN NULL ELSE ml._confidence(u.t) END,
                        CASE WHEN u.t IS NULL THEN NULL ELSE 1 - ml._confidence(u.t) END,
                        CASE WHEN u.t IS NULL THEN NULL ELSE 0.0::double precision END,
                        CASE WHEN u.t IS NULL THEN NULL ELSE 0.0::double precision END
                 FROM unnest(texts) WITH ORDINALITY AS u(t, n);
END $$;

CREATE FUNCTION ml.predict(model text, features jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT AS $$
BEGIN
    PERFORM nextval('ml.per_row_calls');
    RETURN jsonb_build_object('probability', ml._score(features));
END $$;

CREATE FUNCTION ml.predict_batch(model text, rows jsonb[]) RETURNS TABLE(ord integer, result jsonb)
LANGUAGE plpgsql VOLATILE STRICT ROWS 1000 AS $$
BEGIN
    PERFORM nextval('ml.batch_calls');
    RETURN QUERY SELECT u.n::integer,
                        CASE WHEN u.r IS NULL THEN NULL
                             WHEN model = 'churn' THEN jsonb_build_object('churned', ml._score(u.r) > 0.5,
                                                                          'probability', ml._score(u.r))
                             ELSE jsonb_build_object('probability', ml._score(u.r)) END
                 FROM unnest(rows) WITH ORDINALITY AS u(r, n);
END $$;

-- A typed per-model function as ml.sync() generates it (one output: a scalar).
CREATE FUNCTION ml.lead_score(mostype bigint, maanthui bigint, mgemomv bigint) RETURNS double precision
LANGUAGE plpgsql VOLATILE STRICT AS $$
-- return GD['sqlml'].predict_typed(plpy, 'lead_score', ['mostype', 'maanthui', 'mgemomv'], ['probability'], args)
BEGIN
    PERFORM nextval('ml.per_row_calls');
    RETURN ml._score(jsonb_build_object('mostype', mostype, 'maanthui', maanthui, 'mgemomv', mgemomv));
END $$;

-- A typed function over nullable inputs (a tabular model: NULL is a missing value it scores), as
-- ml.sync() generates it for such a model: not STRICT.
CREATE FUNCTION ml.lead_nulls(mostype bigint, maanthui bigint, mgemomv bigint) RETURNS double precision
LANGUAGE plpgsql VOLATILE AS $$
-- return GD['sqlml'].predict_typed(plpy, 'lead_nulls', ['mostype', 'maanthui', 'mgemomv'], ['probability'], args)
BEGIN
    PERFORM nextval('ml.per_row_calls');
    RETURN ml._score(jsonb_build_object('mostype', mostype, 'maanthui', maanthui, 'mgemomv', mgemomv));
END $$;

-- A typed function with several outputs returns a composite ml.<model>_result.
CREATE TYPE ml.churn_result AS (churned boolean, probability double precision);
CREATE FUNCTION ml.churn(tenure bigint, plan text) RETURNS ml.churn_result
LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE s double precision;
BEGIN
    PERFORM nextval('ml.per_row_calls');
    s := ml._score(jsonb_build_object('tenure', tenure, 'plan', plan));
    RETURN ROW(s > 0.5, s)::ml.churn_result;
END $$;

-- What ml._generated records for those, so the catalog loader finds them.
CREATE TABLE ml._generated (model text PRIMARY KEY, identity text NOT NULL, synced_at timestamptz NOT NULL DEFAULT now());
INSERT INTO ml._generated (model, identity) VALUES ('lead_score', 'bigint, bigint, bigint'), ('churn', 'bigint, text'),
    ('lead_nulls', 'bigint, bigint, bigint');
COMMENT ON FUNCTION ml.lead_score(bigint, bigint, bigint) IS 'Score one row with model lead_score (version 1; generated by ml.sync()). Returns probability. NULL in any input gives NULL.';
COMMENT ON FUNCTION ml.churn(bigint, text) IS 'Score one row with model churn (version 1; generated by ml.sync()). Returns churned, probability. NULL in any input gives NULL.';
