-- unchanged: model call evaluated conditionally (CASE/COALESCE branch)
SELECT
  review_id,
  CASE WHEN LENGTH(body) < 20 THEN (
    ml.sentiment(body)
  ).label END
FROM reviews
