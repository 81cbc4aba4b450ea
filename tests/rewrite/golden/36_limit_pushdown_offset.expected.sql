WITH __ml_rows_1 AS MATERIALIZED (
  SELECT
    *,
    ROW_NUMBER() OVER () AS __ml_n
  FROM (
    SELECT
      review_id AS __ml_c1,
      product AS __ml_c2,
      review_id AS __ml_v1
    FROM reviews
    WHERE
      stars > 1
    ORDER BY
      review_id DESC
    LIMIT 7
    OFFSET 3
  ) AS q
), __ml_in_2 AS (
  SELECT DISTINCT
    CAST(1 AS BIGINT) AS __ml_k1,
    CAST(2 AS BIGINT) AS __ml_k2,
    CAST(r.__ml_v1 AS BIGINT) AS __ml_k3
  FROM __ml_rows_1 AS r
  WHERE
    NOT CAST(1 AS BIGINT) IS NULL
    AND NOT CAST(2 AS BIGINT) IS NULL
    AND NOT CAST(r.__ml_v1 AS BIGINT) IS NULL
), __ml_2 AS MATERIALIZED (
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
    FROM __ml_in_2
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1, x.__ml_k2, x.__ml_k3) WITH ORDINALITY AS u(__ml_k1, __ml_k2, __ml_k3, __ml_ord)
  JOIN LATERAL ml.predict_batch('lead_score', x.__ml_batch) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  r.__ml_c1 AS "review_id",
  r.__ml_c2 AS "product",
  __ml_2.__ml_value AS "score"
FROM __ml_rows_1 AS r
LEFT JOIN __ml_2
  ON __ml_2.__ml_k1 = CAST(1 AS BIGINT)
  AND __ml_2.__ml_k2 = CAST(2 AS BIGINT)
  AND __ml_2.__ml_k3 = CAST(r.__ml_v1 AS BIGINT)
ORDER BY
  r.__ml_n
