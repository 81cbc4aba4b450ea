SELECT review_id FROM reviews ORDER BY (ml.sentiment(body)).confidence DESC, review_id
