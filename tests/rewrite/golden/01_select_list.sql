SELECT review_id, ml.sentiment(body) FROM reviews
