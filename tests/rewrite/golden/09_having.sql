SELECT product, count(*) FROM reviews GROUP BY product HAVING avg((ml.sentiment(body)).confidence) > 0.4
