SELECT product, (ml.sentiment(product)).label, count(*) FROM reviews GROUP BY ROLLUP (product)
