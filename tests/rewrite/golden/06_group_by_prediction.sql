SELECT (ml.sentiment(body)).label, count(*) FROM reviews GROUP BY (ml.sentiment(body)).label
