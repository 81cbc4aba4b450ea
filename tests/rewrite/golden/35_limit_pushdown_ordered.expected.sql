WITH __ml_rows_1 AS MATERIALIZED (
  SELECT
    *,
    ROW_NUMBER() OVER () AS __ml_n
  FROM (
    SELECT
      review_id AS __ml_c1,
      body AS __ml_v1
    FROM reviews
    ORDER BY
      review_id
    LIMIT 5
  ) AS q
), __ml_in_2 AS (
  SELECT DISTINCT
    CAST(r.__ml_v1 AS TEXT) AS __ml_k1
  FROM __ml_rows_1 AS r
  WHERE
    NOT CAST(r.__ml_v1 AS TEXT) IS NULL
), __ml_2 AS MATERIALIZED (
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
    FROM __ml_in_2
  ) AS x
  CROSS JOIN LATERAL UNNEST(x.__ml_k1) WITH ORDINALITY AS u(__ml_k1, __ml_ord)
  JOIN LATERAL ml.sentiment_batch(x.__ml_k1) AS b
    ON b.ord = u.__ml_ord
)
SELECT
  r.__ml_c1 AS "review_id",
  (
    __ml_2.__ml_value
  ).label AS "label"
FROM __ml_rows_1 AS r
LEFT JOIN __ml_2
  ON __ml_2.__ml_k1 = CAST(r.__ml_v1 AS TEXT)
ORDER BY
  r.__ml_n
