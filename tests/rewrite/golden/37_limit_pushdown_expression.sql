SELECT review_id || ':' || (ml.sentiment(body)).label AS tag FROM reviews ORDER BY 1 LIMIT 4
