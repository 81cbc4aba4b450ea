WITH __ml_in_1 AS (
  SELECT DISTINCT
    CAST(product AS TEXT) AS __ml_k1
  FROM reviews
  WHERE
    NOT CAST(product AS TEXT) IS NULL
), __ml_1 AS MATERIALIZED (
  SELECT
    u.__ml_k1,
    CASE
      WHEN b.label IS NULL
      THEN NULL
      ELSE CAST(ROW(b.label, b.confidence, b.score_positive, b.score_negative, b.score_neutral, b.score_mixed) AS ml.sentiment_result)
    END AS __ml_value
  FROM (
    SELECT
      ARRAY_AGG(__ml_k1) AS __ml_k1
    FROM __ml_in_1
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1) WITH ORDINALITY AS u(__ml_k1, __ml_ord)
  JOIN LATERAL ml.sentiment_batch(x.__ml_k1) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  product,
  (
    __ml_1.__ml_value
  ).label AS "label",
  COUNT(*)
FROM reviews
LEFT JOIN __ml_1
  ON __ml_1.__ml_k1 = CAST(product AS TEXT)
GROUP BY
  product,
  __ml_1.__ml_value
