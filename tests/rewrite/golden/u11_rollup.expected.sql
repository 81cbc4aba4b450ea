-- unchanged: model call outside an aggregate in an aggregate query without a plain GROUP BY
SELECT
  product,
  (
    ml.sentiment(product)
  ).label,
  COUNT(*)
FROM reviews
GROUP BY
  ROLLUP (
    product
  )
