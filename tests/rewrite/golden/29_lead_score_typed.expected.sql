WITH __ml_in_1 AS (
  SELECT DISTINCT
    CAST(mostype AS BIGINT) AS __ml_k1,
    CAST(maanthui AS BIGINT) AS __ml_k2,
    CAST(mgemomv AS BIGINT) AS __ml_k3
  FROM leads
  WHERE
    NOT CAST(mostype AS BIGINT) IS NULL
    AND NOT CAST(maanthui AS BIGINT) IS NULL
    AND NOT CAST(mgemomv AS BIGINT) IS NULL
), __ml_1 AS MATERIALIZED (
  SELECT
    u.__ml_k1,
    u.__ml_k2,
    u.__ml_k3,
    CAST(b.result ->> 'probability' AS DOUBLE PRECISION) AS __ml_value
  FROM (
    SELECT
      ARRAY_AGG(__ml_k1) AS __ml_k1,
      ARRAY_AGG(__ml_k2) AS __ml_k2,
      ARRAY_AGG(__ml_k3) AS __ml_k3,
      ARRAY_AGG(JSONB_BUILD_OBJECT('mostype', __ml_k1, 'maanthui', __ml_k2, 'mgemomv', __ml_k3)) AS __ml_batch
    FROM __ml_in_1
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1, x.__ml_k2, x.__ml_k3) WITH ORDINALITY AS u(__ml_k1, __ml_k2, __ml_k3, __ml_ord)
  JOIN LATERAL ml.predict_batch('lead_score', x.__ml_batch) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  lead_id,
  __ml_1.__ml_value AS "lead_score"
FROM leads
LEFT JOIN __ml_1
  ON __ml_1.__ml_k1 = CAST(mostype AS BIGINT)
  AND __ml_1.__ml_k2 = CAST(maanthui AS BIGINT)
  AND __ml_1.__ml_k3 = CAST(mgemomv AS BIGINT)
