-- unchanged: model call in a JOINS clause
SELECT
  p.name
FROM products AS p
JOIN reviews AS r
  ON r.product = p.product AND (
    ml.sentiment(r.body)
  ).label = 'positive'
