SELECT (ml.sentiment(body)).label FROM reviews WHERE stars = 5 UNION ALL SELECT (ml.sentiment(name)).label FROM products
