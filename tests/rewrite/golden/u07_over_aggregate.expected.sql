-- unchanged: model call over an aggregate, window or subquery
SELECT
  product,
  ml.sentiment(STRING_AGG(body, ' '
  ORDER BY
    review_id))
FROM reviews
GROUP BY
  product
