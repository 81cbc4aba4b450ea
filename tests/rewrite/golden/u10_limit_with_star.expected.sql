-- unchanged: LIMIT with SELECT * (every row would be scored)
SELECT
  *,
  ml.sentiment(body)
FROM reviews
ORDER BY
  review_id
LIMIT 3
