SELECT review_id, rank() OVER (PARTITION BY product ORDER BY (ml.sentiment(body)).confidence, review_id) AS r FROM reviews
