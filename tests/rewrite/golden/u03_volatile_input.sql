SELECT review_id, ml.sentiment(body || random()::text) FROM reviews
