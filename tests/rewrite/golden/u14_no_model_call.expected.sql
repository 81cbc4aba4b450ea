-- unchanged: no per-row model calls
SELECT
  review_id,
  body
FROM reviews
ORDER BY
  review_id
