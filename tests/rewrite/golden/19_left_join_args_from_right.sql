SELECT p.product, (ml.sentiment(r.body)).label FROM products p LEFT JOIN reviews r ON r.product = p.product AND r.stars = 5
