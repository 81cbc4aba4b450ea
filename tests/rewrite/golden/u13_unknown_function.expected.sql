-- unchanged: model call over a volatile or unknown function
SELECT
  ml.sentiment(MY_CLEAN(body))
FROM reviews
