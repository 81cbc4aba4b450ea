WITH __ml_in_1 AS (
  SELECT DISTINCT
    CAST(tenure AS BIGINT) AS __ml_k1,
    CAST(plan AS TEXT) AS __ml_k2
  FROM leads
  WHERE
    NOT CAST(tenure AS BIGINT) IS NULL AND NOT CAST(plan AS TEXT) IS NULL
), __ml_1 AS MATERIALIZED (
  SELECT
    u.__ml_k1,
    u.__ml_k2,
    CAST(ROW(
      CAST(b.result ->> 'churned' AS BOOLEAN),
      CAST(b.result ->> 'probability' AS DOUBLE PRECISION)
    ) AS ml.churn_result) AS __ml_value
  FROM (
    SELECT
      ARRAY_AGG(__ml_k1) AS __ml_k1,
      ARRAY_AGG(__ml_k2) AS __ml_k2,
      ARRAY_AGG(JSONB_BUILD_OBJECT('tenure', __ml_k1, 'plan', __ml_k2)) AS __ml_batch
    FROM __ml_in_1
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1, x.__ml_k2) WITH ORDINALITY AS u(__ml_k1, __ml_k2, __ml_ord)
  JOIN LATERAL ml.predict_batch('churn', x.__ml_batch) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  lead_id,
  __ml_1.__ml_value AS "churn"
FROM leads
LEFT JOIN __ml_1
  ON __ml_1.__ml_k1 = CAST(tenure AS BIGINT) AND __ml_1.__ml_k2 = CAST(plan AS TEXT)
