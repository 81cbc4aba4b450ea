-- unchanged: FROM holds a volatile or unknown function or TABLESAMPLE
SELECT
  (
    ml.sentiment(body)
  ).label
FROM reviews TABLESAMPLE SYSTEM (50)
