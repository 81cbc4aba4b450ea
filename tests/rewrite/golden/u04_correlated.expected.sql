-- unchanged: possibly correlated subquery (unqualified or outer column references)
SELECT
  name,
  (
    SELECT
      MAX((
        ml.sentiment(body)
      ).confidence)
    FROM reviews
    WHERE
      reviews.product = products.product
  )
FROM products
