-- unchanged: model call over a volatile or unknown function
SELECT
  review_id,
  ml.sentiment(body || CAST(RANDOM() AS TEXT))
FROM reviews
