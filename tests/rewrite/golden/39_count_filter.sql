SELECT product, count(*) FILTER (WHERE (ml.sentiment(body)).label = 'positive') AS positives FROM reviews GROUP BY product
