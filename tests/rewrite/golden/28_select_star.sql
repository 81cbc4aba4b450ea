SELECT *, ml.sentiment(body) AS s FROM reviews
