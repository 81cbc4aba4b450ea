-- unchanged: model call evaluated conditionally (CASE/COALESCE branch)
SELECT
  review_id,
  COALESCE(product, (
    ml.sentiment(body)
  ).label)
FROM reviews
