-- unchanged: possibly correlated subquery (unqualified or outer column references)
SELECT
  name
FROM products
WHERE
  product IN (
    SELECT
      product
    FROM reviews
    WHERE
      (
        ml.sentiment(body)
      ).label = 'negative'
  )
