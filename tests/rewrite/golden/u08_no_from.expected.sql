-- unchanged: model call in a SELECT without FROM (a single row: nothing to batch)
SELECT
  ml.sentiment('what a great day')
