WITH __ml_in_1 AS (
  SELECT DISTINCT
    CAST(JSONB_BUILD_OBJECT('mostype', mostype, 'maanthui', maanthui) AS JSONB) AS __ml_k1
  FROM leads
  WHERE
    NOT CAST(JSONB_BUILD_OBJECT('mostype', mostype, 'maanthui', maanthui) AS JSONB) IS NULL
), __ml_1 AS MATERIALIZED (
  SELECT
    u.__ml_k1,
    b.result AS __ml_value
  FROM (
    SELECT
      ARRAY_AGG(__ml_k1) AS __ml_k1
    FROM __ml_in_1
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1) WITH ORDINALITY AS u(__ml_k1, __ml_ord)
  JOIN LATERAL ml.predict_batch('lead_score', x.__ml_k1) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  lead_id,
  __ml_1.__ml_value AS p
FROM leads
LEFT JOIN __ml_1
  ON __ml_1.__ml_k1 = CAST(JSONB_BUILD_OBJECT('mostype', mostype, 'maanthui', maanthui) AS JSONB)
