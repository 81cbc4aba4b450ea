SELECT review_id, (ml.sentiment(body)).label, (ml.sentiment(body)).confidence FROM reviews
