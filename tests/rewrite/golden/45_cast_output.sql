SELECT review_id, ml.sentiment(body)::text FROM reviews
