SELECT product, avg((ml.sentiment(body)).confidence) AS mean_confidence FROM reviews GROUP BY product
