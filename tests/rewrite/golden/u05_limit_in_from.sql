SELECT (ml.sentiment(body)).label FROM (SELECT body FROM reviews LIMIT 10) AS v
