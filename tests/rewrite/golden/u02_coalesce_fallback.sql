SELECT review_id, coalesce(product, (ml.sentiment(body)).label) FROM reviews
