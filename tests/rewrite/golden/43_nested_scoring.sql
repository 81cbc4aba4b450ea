SELECT (ml.sentiment(label)).label, count(*) FROM (SELECT (ml.sentiment(body)).label AS label FROM reviews) v GROUP BY 1
