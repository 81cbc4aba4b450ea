SELECT (ml.sentiment(body)).label AS label, count(*) AS n FROM reviews GROUP BY 1
