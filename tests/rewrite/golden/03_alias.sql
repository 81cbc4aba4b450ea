SELECT review_id, (ml.sentiment(body)).label AS mood FROM reviews
