SELECT review_id, (ml.sentiment(body)).confidence AS c FROM reviews ORDER BY c DESC, review_id LIMIT 5
