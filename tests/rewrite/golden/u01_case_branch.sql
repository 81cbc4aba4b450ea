SELECT review_id, CASE WHEN length(body) < 20 THEN (ml.sentiment(body)).label END FROM reviews
