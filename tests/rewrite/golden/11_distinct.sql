SELECT DISTINCT (ml.sentiment(body)).label FROM reviews
