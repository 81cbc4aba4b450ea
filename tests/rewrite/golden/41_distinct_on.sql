SELECT DISTINCT ON (product) product, review_id, (ml.sentiment(body)).label FROM reviews ORDER BY product, review_id
