SELECT r.review_id, (ml.sentiment(r.body)).label AS body_label, (ml.sentiment(r.product)).label AS product_label FROM reviews r
