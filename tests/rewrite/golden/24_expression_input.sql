SELECT review_id, (ml.sentiment(lower(body) || ' ' || product)).label FROM reviews
