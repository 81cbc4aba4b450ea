-- unchanged: FROM holds a subquery with LIMIT/OFFSET/DISTINCT ON (not repeatable)
SELECT
  (
    ml.sentiment(body)
  ).label
FROM (
  SELECT
    body
  FROM reviews
  LIMIT 10
) AS v
